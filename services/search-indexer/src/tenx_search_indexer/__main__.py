"""``python -m tenx_search_indexer [serve | migrate | relay | dead-letters | reindex]``;
``serve`` (and ``worker``) run the indexer."""

from tenx_common.runtime import run_service_cli
from tenx_search_indexer.adapters.orm import dead_letters, outbox
from tenx_search_indexer.app import create_app
from tenx_search_indexer.service_layer.reindex import reindex_command
from tenx_search_indexer.settings import Settings
from tenx_search_indexer.worker import create_worker


def main() -> None:
    run_service_cli(
        package="tenx_search_indexer",
        load_settings=Settings,
        create_app=create_app,
        outbox=outbox,
        worker=create_worker,
        dead_letters=dead_letters,
        commands={"reindex": reindex_command},
    )


if __name__ == "__main__":
    main()
