"""``python -m tenx_api [serve | migrate | seed | relay]``."""

from tenx_api.adapters.orm import outbox
from tenx_api.app import create_app
from tenx_api.bootstrap import Container, bootstrap
from tenx_api.service_layer.seed import seed_catalog
from tenx_api.settings import Settings
from tenx_common.cli import container_command, run_service_cli
from tenx_common.relay import run_relay


async def _seed(container: Container) -> str:
    return f"demo catalog: {await seed_catalog(deps=container.deps)} products added"


def main() -> None:
    run_service_cli(
        package="tenx_api",
        load_settings=Settings,
        create_app=create_app,
        commands={
            "seed": container_command(bootstrap, _seed),
            "relay": lambda settings: run_relay(settings, outbox),
        },
    )


if __name__ == "__main__":
    main()
