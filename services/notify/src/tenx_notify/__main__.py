"""``python -m tenx_notify [serve | migrate | relay | worker | dead-letters]``."""

from tenx_common.runtime import run_service_cli
from tenx_notify.adapters.orm import dead_letters, outbox
from tenx_notify.app import create_app
from tenx_notify.settings import Settings
from tenx_notify.worker import create_worker


def main() -> None:
    run_service_cli(
        package="tenx_notify",
        load_settings=Settings,
        create_app=create_app,
        outbox=outbox,
        worker=create_worker,
        dead_letters=dead_letters,
    )


if __name__ == "__main__":
    main()
