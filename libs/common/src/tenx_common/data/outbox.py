"""The transactional outbox: events are rows written in the transaction that
changes the state; a relay publishes them to Kafka after commit.

The row keeps the CloudEvent, its topic and key, and the trace context of the
request that caused it, so the publish joins the request's trace.
"""

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.events import Event, cloud_event
from tenx_common.loops.periodic import repeat

log = logging.getLogger(__name__)


def wake_channel(table: Table) -> str:
    """What a transaction that staged events into ``table`` NOTIFYs at its
    commit, and what that table's relays listen on: the table's name, so a
    second outbox in the same database (a benchmark's) wakes only its own."""
    return table.name


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


def outbox_row(event: Event, *, source: str) -> dict[str, Any]:
    """``event`` as an outbox row, with the trace context current now (the
    request's, or a saga step's), so its publish joins that trace."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    document = cloud_event(event, source=source)
    return {
        "id": uuid.UUID(document["id"]),
        "topic": event.TOPIC,
        "key": event.aggregate_id(),
        "type": event.TYPE,
        "payload": document,
        "headers": headers,
        "occurred_at": datetime.now(UTC),
    }


class OutboxMonitor:
    """A worker loop: every few seconds, how many rows of the outbox wait to be
    published and when the oldest of them occurred (from the partial index of
    unpublished rows). On /metrics: ``tenx_outbox_depth`` and
    ``tenx_outbox_oldest_age_seconds`` (0 when none waits)."""

    def __init__(self, engine: AsyncEngine, table: Table, *, interval_s: float = 5.0) -> None:
        self.engine = engine
        self.table = table
        self.interval_s = interval_s
        self.stopping = asyncio.Event()
        self.depth = 0
        self.oldest: datetime | None = None

    async def measure(self) -> None:
        table = self.table
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(table.c.occurred_at)).where(
                        table.c.published_at.is_(None)
                    )
                )
            ).one()
        self.depth, self.oldest = int(row[0]), row[1]

    async def run(self) -> None:
        await repeat(
            self.measure,
            interval_s=self.interval_s,
            stopping=self.stopping,
            what=f"outbox monitor: measuring {self.table.name} failed",
            logger=log,
        )

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "tenx_outbox_depth", "Outbox rows not yet published", labels=["table"]
        )
        depth.add_metric([self.table.name], self.depth)
        age = GaugeMetricFamily(
            "tenx_outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet published",
            labels=["table"],
        )
        oldest = self.oldest
        age.add_metric(
            [self.table.name],
            max(0.0, (datetime.now(UTC) - oldest).total_seconds()) if oldest else 0.0,
        )
        yield from (depth, age)
