"""Alembic, once for every service: each service keeps its revisions in its own
package (``<package>/migrations``) and its own database."""

import asyncio
import importlib
import sys

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql import JSONB
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


def create_outbox_table_v1() -> None:
    """The ``outbox`` table of ``tenx_common.data.outbox``, as a service's migration
    creates it (version 1; a change gets a new function)."""
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "outbox",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("occurred_at", tz, nullable=False),
        sa.Column("published_at", tz),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["occurred_at"],
        postgresql_where=sa.text("published_at IS NULL"),
    )


def create_consumer_tables_v1() -> None:
    """The ``inbox`` and ``dead_letters`` tables of ``tenx_common.messaging.inbox``, as a
    service's migration creates them (version 1; a change gets a new function)."""
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redriven_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ux_dead_letters_record",
        "dead_letters",
        ["consumer", "topic", "partition", "offset"],
        unique=True,
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status", "failed_at"])


def drop_consumer_tables_v1() -> None:
    op.drop_table("dead_letters")
    op.drop_table("inbox")


def main() -> None:
    """``python -m tenx_common.data.migrations PACKAGE...``: migrate several services in
    one process (what ``make up`` does); each reads its own settings."""
    for package in sys.argv[1:]:
        settings = importlib.import_module(f"{package}.settings").Settings()
        upgrade(package=package, url=settings.session_url())


if __name__ == "__main__":
    main()
