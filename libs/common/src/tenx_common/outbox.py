"""The transactional outbox: events are rows written in the transaction that
changes the state; a relay publishes them to Kafka after commit.

The row keeps the CloudEvent, its topic and key, and the trace context of the
request that caused it, so the publish joins the request's trace.
"""

import uuid
from datetime import UTC, datetime

from opentelemetry import propagate
from sqlalchemy import Column, DateTime, Index, MetaData, Table, Text, Uuid, insert, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from tenx_common.events import Event, cloud_event


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True)),
        Index(
            "ix_outbox_unpublished", "occurred_at", postgresql_where=text("published_at IS NULL")
        ),
    )


async def add_event(session: AsyncSession, table: Table, event: Event, *, source: str) -> None:
    """Stage ``event`` in the session's transaction; it is published only if it commits."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    document = cloud_event(event, source=source)
    await session.execute(
        insert(table).values(
            id=uuid.UUID(document["id"]),
            topic=event.TOPIC,
            key=event.aggregate_id(),
            type=event.TYPE,
            payload=document,
            headers=headers,
            occurred_at=datetime.now(UTC),
        )
    )
