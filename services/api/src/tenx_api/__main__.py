"""``python -m tenx_api [serve|migrate]``."""

from tenx_api.app import create_app
from tenx_api.settings import Settings
from tenx_common.cli import run_service_cli


def main() -> None:
    run_service_cli(package="tenx_api", load_settings=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
