"""``python -m tenx_auth [serve | migrate | rotate-key]``."""

import asyncio
import sys

from tenx_auth.app import create_app
from tenx_auth.bootstrap import bootstrap
from tenx_auth.service_layer import handlers
from tenx_auth.settings import Settings
from tenx_common.cli import run_service_cli


async def _rotate_key(settings: Settings) -> None:
    async with bootstrap(settings) as container:
        key = await handlers.rotate_signing_key(deps=container.deps)
    sys.stdout.write(f"new signing key {key.kid}, signing from {key.activates_at.isoformat()}\n")


def main() -> None:
    run_service_cli(
        package="tenx_auth",
        load_settings=Settings,
        create_app=create_app,
        commands={"rotate-key": lambda settings: asyncio.run(_rotate_key(settings))},
    )


if __name__ == "__main__":
    main()
