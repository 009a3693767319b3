"""The outbox relay: publishes a service's outbox rows to Kafka after commit.

Run as its own process (``python -m tenx_<svc> relay --port N``: /healthz,
/readyz and /metrics on its port), as many as wanted, or in the service's
worker process (``relay_in_worker``, as the local stack does).
Rows are spread over ``LANES`` by their key's hash. A batch is claimed in one
transaction that first takes the transaction-level advisory locks of the lanes
no other relay holds, then claims, reads and marks published the oldest
unpublished rows of those lanes in one statement (an UPDATE of rows selected
``FOR UPDATE SKIP LOCKED``): two relays never publish one row at once, and the
rows of one key (one lane) go out in the order they were written. Each row is
published with the idempotent producer (acks=all) under a PRODUCER span that
continues the trace stored in the row (when that trace is sampled; otherwise
the stored context is passed on as it is), in one record batch per partition
(``Batches``), and the transaction commits once the broker has acknowledged
them all. A batch that fails is rolled back, so unmarked; a crash between
publish and commit publishes the batch again: consumers deduplicate by event
id.

Wake-ups: ``LISTEN`` on the table's channel (``wake_channel``: the unit of
work notifies in the writing transaction, delivered at commit), with a poll
every ``outbox_poll_interval_s`` as the fallback. Published rows are deleted
after ``outbox_retention_s``.

A relay takes every lane no other relay holds, so a second relay is a hot
standby rather than more throughput. A broker or database that fails never
ends it: it starts over with backoff (0.5 s doubling to 10 s) and is not ready
meanwhile (``check``: its own /readyz, or the worker's ``relay`` check). Its
spans keep the relay's service name (``api-relay``) in the worker's process too.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer, get_current_span
from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import (
    Table,
    Text,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenx_common.data.db import bounded_waits
from tenx_common.data.outbox import wake_channel
from tenx_common.loops.backoff import backoff_s
from tenx_common.loops.supervised import log_failure, pause, supervised
from tenx_common.loops.wakeup import listening, nap
from tenx_common.observability.telemetry import setup_telemetry
from tenx_common.settings import KafkaSettings, PostgresSettings, RelaySettings

log = logging.getLogger(__name__)

LANES = 16
RECORD_BATCH_BYTES = 512 * 1024


def lane_of(table: Table) -> Any:
    return (func.hashtext(table.c.key).op("&")(0x7FFFFFFF)) % LANES


async def publish_batch(
    engine: AsyncEngine,
    table: Table,
    producer: AIOKafkaProducer,
    tracer: Tracer,
    *,
    batch_size: int,
) -> int:
    """Publish one batch of unpublished rows; how many."""
    async with engine.begin() as conn:
        lanes = (
            await conn.execute(
                text(
                    "SELECT coalesce(array_agg(lane), '{}') FROM generate_series(0, :last) lane"
                    # A lane's lock: (the outbox table's name hashed, the lane).
                    " WHERE pg_try_advisory_xact_lock(hashtext(:table), lane)"
                ),
                {"last": LANES - 1, "table": table.name},
            )
        ).scalar_one()
        if not lanes:
            return 0
        unpublished = (
            select(table.c.id)
            .where(table.c.published_at.is_(None))
            .order_by(table.c.occurred_at, table.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        if len(lanes) < LANES:  # every lane held: no lane predicate to evaluate per row
            unpublished = unpublished.where(lane_of(table).in_(lanes))
        claim = (
            # Claimed, read and marked in one statement: the mark commits only
            # once every row is acknowledged, so a batch that fails is unmarked.
            update(table)
            .where(table.c.id.in_(unpublished.scalar_subquery()))
            .values(published_at=func.now())
            # The document and headers as PostgreSQL renders them: the document
            # goes out as it is, the headers are read with orjson, not through
            # the driver's per-row JSONB codec.
            .returning(
                table.c.id,
                table.c.topic,
                table.c.key,
                table.c.occurred_at,
                cast(table.c.headers, Text).label("context"),
                cast(table.c.payload, Text).label("document"),
            )
        )
        # An UPDATE returns its rows in no set order: each key's in the order written.
        rows = sorted((await conn.execute(claim)).all(), key=lambda r: (r.occurred_at, r.id))
        if not rows:
            return 0
        batches = Batches(producer)
        for row in rows:
            stored: dict[str, str] = orjson.loads(row.context) if row.context else {}
            if not _sampled(stored):
                # Nobody will see this trace: no span, the stored context goes on as it is.
                await batches.add(row, stored)
                continue
            with tracer.start_as_current_span(
                f"{row.topic} publish",
                context=propagate.extract(stored),
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "publish",
                    "messaging.destination.name": row.topic,
                    "messaging.message.id": str(row.id),
                    "messaging.kafka.message.key": row.key,
                },
            ):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                await batches.add(row, carrier)
        await batches.sent()  # every row acknowledged by the broker (acks=all)
    return len(rows)


def _sampled(context: dict[str, str]) -> bool:
    """Whether the stored W3C context is a sampled trace: the flags byte of a
    well-formed ``traceparent`` read as it is, anything else through the
    propagator (which tells a malformed one from a sampled one)."""
    traceparent = context.get("traceparent", "")
    if (
        len(traceparent) == 55
        and traceparent[2] == traceparent[35] == traceparent[52] == "-"
        and traceparent[3:35].strip("0")  # an all-zero id is invalid: not sampled
        and traceparent[36:52].strip("0")
    ):
        with contextlib.suppress(ValueError):
            return bool(int(traceparent[53:], 16) & 1)
    parent = propagate.extract(context)
    return bool(get_current_span(parent).get_span_context().trace_flags.sampled)


@functools.lru_cache(maxsize=65536)
def _key_index(key: bytes, partitions: int) -> int:
    """The index of ``key``'s partition, as the producer's default partitioner
    computes it (murmur2, in pure Python: an aggregate's events share a key)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class Batches:
    """The rows of a claimed batch as Kafka record batches, one being filled
    per partition: one future per record batch, not one per row. A row's
    partition is the one ``send`` would pick for its key (the producer's
    partitioner over the topic's partitions), so per-key order holds."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._filling: dict[tuple[str, int], BatchBuilder] = {}
        self._sent: list[asyncio.Future[Any]] = []

    async def add(self, row: Any, context: dict[str, str]) -> None:
        if (partitions := self._partitions.get(row.topic)) is None:
            partitions = sorted(await self._producer.partitions_for(row.topic))
            self._partitions[row.topic] = partitions
        key = row.key.encode()
        where = (row.topic, partitions[_key_index(key, len(partitions))])
        headers = [("content-type", b"application/cloudevents+json")] + [
            (name, value.encode()) for name, value in context.items()
        ]
        value = row.document.encode()
        batch = self._filling.get(where)
        if batch is None or not batch.append(key=key, value=value, timestamp=None, headers=headers):
            if batch is not None:
                await self._send(where)  # full: on its way, and the row starts the next
            batch = self._filling[where] = self._producer.create_batch()
            # An empty record batch takes any one record (a larger one goes alone).
            batch.append(key=key, value=value, timestamp=None, headers=headers)

    async def _send(self, where: tuple[str, int]) -> None:
        batch = self._filling.pop(where)
        batch.close()  # nothing but these rows in it (``send`` could add to an open one)
        topic, partition = where
        self._sent.append(await self._producer.send_batch(batch, topic, partition=partition))

    async def sent(self) -> None:
        """Until every row added is acknowledged by the broker."""
        for where in list(self._filling):
            await self._send(where)
        await asyncio.gather(*self._sent)


async def sweep_published(engine: AsyncEngine, table: Table, *, retention_s: float) -> int:
    cutoff = datetime.now(UTC) - timedelta(seconds=retention_s)
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(table).where(table.c.published_at.is_not(None), table.c.published_at < cutoff)
        )
    return int(getattr(result, "rowcount", 0) or 0)


class Relay:
    def __init__(self, settings: Any, table: Table) -> None:
        for needed in (PostgresSettings, KafkaSettings, RelaySettings):
            if not isinstance(settings, needed):
                raise TypeError(f"a relay needs {needed.__name__}")
        self.settings: Any = settings
        self.table: Table = table
        self.wake: asyncio.Event = asyncio.Event()
        self.stopping: asyncio.Event = asyncio.Event()
        self.connected = False
        self.published_total = 0
        # Failed sessions in a row; from 1, so a relay that never connected
        # waits a second before its first restart, as it always has.
        self._failures = 1

    async def run(self) -> None:
        """Publish until stopped. A broker or database that fails is retried
        (with backoff, up to 10 s), never fatal: ``connected`` says whether
        the relay is publishing now, its last batch included (its readiness)."""
        telemetry = setup_telemetry(self.settings)
        tracer = telemetry.tracer("tenx.outbox")
        try:
            await supervised(
                lambda: self._session(tracer),
                stopping=self.stopping,
                what=f"outbox relay for {self.table.name} failed; starting over",
                pause_s=self._pause_s,
                logger=log,
            )
        finally:
            self.connected = False
            telemetry.flush()

    def _pause_s(self) -> float:
        """The wait after a failed session: the shortest when the relay had been
        publishing, twice the last one while it cannot connect."""
        self._failures = 1 if self.connected else self._failures + 1
        self.connected = False
        return backoff_s(self._failures, base_s=0.5, max_s=10.0)

    async def _session(self, tracer: Tracer) -> None:
        settings = self.settings
        # Its session kept (LISTEN): the pooler's session pool, or the database.
        engine = create_async_engine(
            settings.session_url(),
            pool_size=2,
            max_overflow=0,
            **bounded_waits(settings, pooled=False),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            # A claimed batch goes out as one record batch per partition
            # (``Batches``); the broker takes up to 1 MiB per batch.
            max_batch_size=RECORD_BATCH_BYTES,
        )
        try:
            await producer.start()
            async with listening(engine, wake_channel(self.table), self.wake):
                log.info("outbox relay started for %s", self.table.name)
                self.connected = True
                await self._loop(engine, producer, tracer)
        finally:
            await producer.stop()
            await engine.dispose()

    async def _loop(self, engine: AsyncEngine, producer: AIOKafkaProducer, tracer: Tracer) -> None:
        settings = self.settings
        next_sweep = time.monotonic()
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                published = await publish_batch(
                    engine, self.table, producer, tracer, batch_size=settings.outbox_batch_size
                )
                self.connected = True
                self.published_total += published
                if time.monotonic() >= next_sweep:
                    await sweep_published(
                        engine, self.table, retention_s=settings.outbox_retention_s
                    )
                    next_sweep = time.monotonic() + 60
            except Exception as exc:
                self.connected = False  # not ready while PostgreSQL or Kafka fails it
                log_failure(exc, "outbox relay: a batch failed; retrying", logger=log)
                published = 0
                await pause(self.stopping, 1.0)
            if published >= settings.outbox_batch_size:
                continue  # more are waiting
            await nap(self.wake, self.stopping, timeout_s=settings.outbox_poll_interval_s)

    def collect(self) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "tenx_outbox_published", "Outbox rows published to Kafka", labels=["table"]
        )
        published.add_metric([self.table.name], self.published_total)
        yield published

    async def check(self) -> None:
        if not self.connected:
            raise ConnectionError("the relay is not connected to PostgreSQL and Kafka")
