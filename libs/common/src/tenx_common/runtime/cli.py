"""The command line every service shares:

    python -m tenx_<svc> serve [--port N]     the HTTP service (the default)
    python -m tenx_<svc> migrate              its database to the latest revision
    python -m tenx_<svc> relay [--port N]     its outbox relay (services with an outbox)
    python -m tenx_<svc> worker [--port N]    its consumer and background loops
    python -m tenx_<svc> dead-letters list [STATUS]
    python -m tenx_<svc> dead-letters redrive (ID... | --all)

plus the commands a service adds. ``--niceness N``: once serving, every
thread of the process runs at niceness N (a background process on cores it
shares with the ones that answer requests)."""

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from fastapi import FastAPI
from sqlalchemy import Table

from tenx_common.data.db import primary_engine
from tenx_common.messaging.inbox import list_dead_letters, request_redrive
from tenx_common.runtime.server import serve
from tenx_common.runtime.worker import create_relay_app
from tenx_common.settings import PostgresSettings, ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
C = TypeVar("C")

Command = Callable[[S, list[str]], None]


def run_service_cli(
    *,
    package: str,
    load_settings: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    outbox: Table | None = None,
    worker: Callable[[S], FastAPI] | None = None,
    dead_letters: Table | None = None,
    commands: Mapping[str, Command[S]] | None = None,
) -> None:
    # The serving commands: the app each serves.
    apps: dict[str, Callable[[S], FastAPI]] = {"serve": create_app}
    if outbox is not None:
        apps["relay"] = lambda settings: create_relay_app(settings, outbox)
    if worker is not None:
        apps["worker"] = worker
    extra: dict[str, Command[S]] = dict(commands or {})
    if dead_letters is not None:
        extra["dead-letters"] = lambda settings, args: _dead_letters(settings, dead_letters, args)
    parser = argparse.ArgumentParser(prog=f"python -m {package}")
    parser.add_argument("command", nargs="?", default="serve", choices=(*apps, "migrate", *extra))
    parser.add_argument("args", nargs="*", help="the command's arguments")
    parser.add_argument("--port", type=int, help="listen on this port instead of the setting's")
    parser.add_argument("--all", action="store_true", help="dead-letters redrive: every parked one")
    parser.add_argument(
        "--niceness",
        type=int,
        default=0,
        choices=range(20),
        metavar="0-19",
        help="once serving, run at this niceness (a background process)",
    )
    args = parser.parse_args()
    settings = load_settings()
    if args.port is not None:
        settings = settings.model_copy(update={"port": args.port})
    if args.command in apps:
        serve(apps[args.command](settings), settings, niceness=args.niceness)
    elif args.command in extra:
        extra[args.command](settings, [*args.args, *(["--all"] if args.all else [])])
    elif args.command == "migrate":
        assert isinstance(settings, PostgresSettings), f"{package} has no database"
        # Imported here: Alembic (and Mako) cost every serving process 0.3 s of its restart.
        from tenx_common.data.migrations import upgrade

        upgrade(package=package, url=settings.session_url())


def wiring_command(
    bootstrap: Callable[[S], AbstractAsyncContextManager[C]],
    job: Callable[[C], Awaitable[str]],
) -> Command[S]:
    """A CLI command that runs ``job`` inside the service's bootstrap and prints
    the line it returns."""

    def run(settings: S, _: list[str]) -> None:
        async def main() -> str:
            async with bootstrap(settings) as wiring:
                return await job(wiring)

        sys.stdout.write(asyncio.run(main()) + "\n")

    return run


def _dead_letters(settings: ServiceSettings, table: Table, args: list[str]) -> None:
    assert isinstance(settings, PostgresSettings)
    action, rest = (args[0], args[1:]) if args else ("list", [])

    async def main() -> str:
        engine = primary_engine(settings)
        try:
            if action == "list":
                found = await list_dead_letters(engine, table, status=rest[0] if rest else None)
                return "\n".join(json.dumps(letter) for letter in found) or "no dead letters"
            if action == "redrive" and (rest == ["--all"] or (rest and "--all" not in rest)):
                ids = None if rest == ["--all"] else [uuid.UUID(value) for value in rest]
                count = await request_redrive(engine, table, ids)
                return f"{count} dead letter(s) marked for redrive; the running worker replays them"
            raise SystemExit(
                "usage: dead-letters list [STATUS] | dead-letters redrive (ID... | --all)"
            )
        finally:
            await engine.dispose()

    sys.stdout.write(asyncio.run(main()) + "\n")
