"""The command line every service shares: ``python -m tenx_<svc> [serve [--port N] | migrate]``,
plus the commands a service adds."""

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from fastapi import FastAPI

from tenx_common.migrations import upgrade
from tenx_common.server import serve
from tenx_common.settings import PostgresSettings, ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
C = TypeVar("C")


def run_service_cli(
    *,
    package: str,
    load_settings: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    commands: Mapping[str, Callable[[S], None]] | None = None,
) -> None:
    extra = dict(commands or {})
    parser = argparse.ArgumentParser(prog=f"python -m {package}")
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "migrate", *extra))
    parser.add_argument("--port", type=int, help="listen on this port instead of the setting's")
    args = parser.parse_args()
    settings = load_settings()
    if args.port is not None:
        settings = settings.model_copy(update={"port": args.port})
    if args.command in extra:
        extra[args.command](settings)
    elif args.command == "migrate":
        assert isinstance(settings, PostgresSettings), f"{package} has no database"
        upgrade(package=package, url=settings.primary_url())
    else:
        serve(create_app(settings), settings)


def container_command(
    bootstrap: Callable[[S], AbstractAsyncContextManager[C]],
    job: Callable[[C], Awaitable[str]],
) -> Callable[[S], None]:
    """A CLI command that runs ``job`` inside the service's bootstrap and prints
    the line it returns."""

    def run(settings: S) -> None:
        async def main() -> str:
            async with bootstrap(settings) as container:
                return await job(container)

        sys.stdout.write(asyncio.run(main()) + "\n")

    return run
