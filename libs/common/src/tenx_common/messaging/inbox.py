"""The inbox and the dead letters of a service's consumers, in its database.

The ``inbox`` holds the id of every event a consumer has had the effect of
(written in the effect's transaction, so a redelivery finds it); the
``dead_letters`` table the records that failed for good, until an operator
asks for their redrive. ``InboxStore`` is what the consumer needs of both,
``SqlInboxStore`` its tables; ``list_dead_letters`` and ``request_redrive`` are
what operators call (admin endpoint, CLI)."""

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data.uow import UnitOfWork
from tenx_common.messaging.errors import PermanentError
from tenx_common.messaging.records import Envelope, Record, read_envelope

log = logging.getLogger(__name__)

PARKED = "parked"
REDRIVE_REQUESTED = "redrive_requested"
REDRIVEN = "redriven"

# One attempt at a dead letter's record: (attempts made, the last error or None).
Attempt = Callable[[Record], Awaitable[tuple[int, str | None]]]


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("event_id", Text, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        Index("ix_inbox_processed_at", "processed_at"),
    )


def dead_letter_table(metadata: MetaData) -> Table:
    return Table(
        "dead_letters",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("consumer", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("key", Text),
        Column("event_id", Text, nullable=False),
        Column("event_type", Text),
        Column("value", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("status", Text, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False),
        Column("redriven_at", DateTime(timezone=True)),
        Index("ux_dead_letters_record", "consumer", "topic", "partition", "offset", unique=True),
        Index("ix_dead_letters_status", "status", "failed_at"),
    )


def dead_letter_topic(consumer: str) -> str:
    return f"dlq.{consumer}"


class InboxStore(Protocol):
    """One consumer's inbox and dead letters (a test gives a fake)."""

    async def claim(self, uow: UnitOfWork, ids: Sequence[str]) -> set[str]:
        """Inbox rows for ``ids``, in ``uow``'s transaction; those that were not there."""
        ...

    async def park(self, record: Record, *, error: str, attempts: int) -> None: ...

    async def parked(self) -> int: ...

    async def redrive(self, attempt: Attempt) -> int:
        """Run every dead letter an operator asked to redrive; how many succeeded."""
        ...

    async def sweep(self, *, retention_s: float) -> int: ...


class SqlInboxStore:
    """``InboxStore`` on the ``inbox`` and ``dead_letters`` tables of ``engine``."""

    def __init__(
        self, *, consumer: str, engine: AsyncEngine, inbox: Table, dead_letters: Table
    ) -> None:
        self.consumer = consumer
        self._engine = engine
        self._inbox = inbox
        self._dead_letters = dead_letters
        # One statement for a batch of any size, the ids as one array: built,
        # compiled and prepared once, not once per batch size as a VALUES list.
        self._claim = (
            insert(inbox)
            .from_select(
                ["consumer", "event_id", "processed_at"],
                select(
                    literal(consumer, Text),
                    func.unnest(bindparam("ids", type_=ARRAY(Text))),
                    func.now(),
                ),
            )
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )

    async def claim(self, uow: UnitOfWork, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        inserted = await uow.session.execute(self._claim, {"ids": list(ids)})
        return set(inserted.scalars())

    async def park(self, record: Record, *, error: str, attempts: int) -> None:
        try:
            envelope: Envelope | None = read_envelope(record)
        except PermanentError:
            envelope = None
        table = self._dead_letters
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(table)
                .values(
                    id=uuid.uuid4(),
                    consumer=self.consumer,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    event_id=envelope.id
                    if envelope
                    else f"{record.topic}:{record.partition}:{record.offset}",
                    event_type=envelope.type if envelope else None,
                    value=record.value.decode(errors="replace"),
                    headers=record.headers,
                    error=error,
                    attempts=attempts,
                    status=PARKED,
                    failed_at=func.now(),
                )
                .on_conflict_do_update(
                    index_elements=[
                        table.c.consumer,
                        table.c.topic,
                        table.c.partition,
                        table.c.offset,
                    ],
                    set_={
                        "error": error,
                        "attempts": table.c.attempts + attempts,
                        "status": PARKED,
                        "failed_at": func.now(),
                    },
                )
            )

    async def parked(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                await conn.scalar(
                    select(func.count()).where(
                        self._dead_letters.c.consumer == self.consumer,
                        self._dead_letters.c.status == PARKED,
                    )
                )
                or 0
            )

    async def redrive(self, attempt: Attempt) -> int:
        table = self._dead_letters
        succeeded = 0
        while True:
            async with self._engine.begin() as conn:
                row = (
                    await conn.execute(
                        select(table)
                        .where(
                            table.c.consumer == self.consumer, table.c.status == REDRIVE_REQUESTED
                        )
                        .order_by(table.c.failed_at)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if row is None:
                    return succeeded
                record = Record(
                    topic=row.topic,
                    partition=row.partition,
                    offset=row.offset,
                    key=row.key,
                    value=row.value.encode(),
                    headers=dict(row.headers),
                )
                attempts, error = await attempt(record)
                values: dict[str, Any] = (
                    {"status": REDRIVEN, "redriven_at": func.now()}
                    if error is None
                    else {"status": PARKED, "error": error, "failed_at": func.now()}
                )
                await conn.execute(
                    update(table)
                    .where(table.c.id == row.id)
                    .values(attempts=table.c.attempts + attempts, **values)
                )
                succeeded += error is None
                log.info(
                    "consumer %s: dead letter %s redriven: %s", self.consumer, row.id, error or "ok"
                )

    async def sweep(self, *, retention_s: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=retention_s)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(self._inbox).where(
                    self._inbox.c.consumer == self.consumer, self._inbox.c.processed_at < cutoff
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)


async def list_dead_letters(
    engine: AsyncEngine, table: Table, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(table).order_by(table.c.failed_at.desc()).limit(limit)
    if status is not None:
        query = query.where(table.c.status == status)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {
            "id": str(row["id"]),
            "consumer": row["consumer"],
            "topic": row["topic"],
            "partition": row["partition"],
            "offset": row["offset"],
            "key": row["key"],
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "error": row["error"],
            "attempts": row["attempts"],
            "status": row["status"],
            "failed_at": row["failed_at"].isoformat(),
            "redriven_at": row["redriven_at"].isoformat() if row["redriven_at"] else None,
        }
        for row in rows
    ]


async def request_redrive(engine: AsyncEngine, table: Table, ids: list[uuid.UUID] | None) -> int:
    """Mark parked dead letters (the given ones, or all) for redrive; how many."""
    query = update(table).where(table.c.status == PARKED).values(status=REDRIVE_REQUESTED)
    if ids is not None:
        query = query.where(table.c.id.in_(ids))
    async with engine.begin() as conn:
        result = await conn.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)
