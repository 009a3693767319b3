"""Alembic, once for every service: each service keeps its revisions in its own
package (``<package>/migrations``) and its own database."""

import asyncio
import importlib
import sys

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine


def upgrade(*, package: str, url: URL, revision: str = "head") -> None:
    """Bring ``package``'s database at ``url`` to ``revision``."""
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.attributes["url"] = url
    command.upgrade(config, revision)


def run_migrations(*, target_metadata: MetaData | None) -> None:
    """The body of every service's ``migrations/env.py`` (online mode only)."""
    url: URL = context.config.attributes["url"]

    def run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())


def main() -> None:
    """``python -m tenx_common.migrations PACKAGE...``: migrate several services in
    one process (what ``make up`` does); each reads its own settings."""
    for package in sys.argv[1:]:
        settings = importlib.import_module(f"{package}.settings").Settings()
        upgrade(package=package, url=settings.primary_url())


if __name__ == "__main__":
    main()
