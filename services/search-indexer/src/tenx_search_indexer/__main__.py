"""``python -m tenx_search_indexer [serve|migrate]``."""

from tenx_common.cli import run_service_cli
from tenx_search_indexer.app import create_app
from tenx_search_indexer.settings import Settings


def main() -> None:
    run_service_cli(package="tenx_search_indexer", load_settings=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
