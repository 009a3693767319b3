"""``python -m tenx_api [serve | migrate | seed]``."""

import asyncio
import sys

from tenx_api.app import create_app
from tenx_api.bootstrap import bootstrap
from tenx_api.service_layer.seed import seed_catalog
from tenx_api.settings import Settings
from tenx_common.cli import run_service_cli


async def _seed(settings: Settings) -> None:
    async with bootstrap(settings) as container:
        added = await seed_catalog(deps=container.deps)
    sys.stdout.write(f"demo catalog: {added} products added\n")


def main() -> None:
    run_service_cli(
        package="tenx_api",
        load_settings=Settings,
        create_app=create_app,
        commands={"seed": lambda settings: asyncio.run(_seed(settings))},
    )


if __name__ == "__main__":
    main()
