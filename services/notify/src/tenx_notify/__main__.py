"""``python -m tenx_notify [serve|migrate]``."""

from tenx_common.cli import run_service_cli
from tenx_notify.app import create_app
from tenx_notify.settings import Settings


def main() -> None:
    run_service_cli(package="tenx_notify", load_settings=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
