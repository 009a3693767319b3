"""``python -m tenx_auth [serve|migrate]``."""

from tenx_auth.app import create_app
from tenx_auth.settings import Settings
from tenx_common.cli import run_service_cli


def main() -> None:
    run_service_cli(package="tenx_auth", load_settings=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
