"""The idempotent consumer: how every service turns Kafka events into effects.

A service names its consumer (the Kafka group) and gives one handler per event
class. For each record, in partition order:

1. The CloudEvent is read; a type this consumer has no handler for is skipped.
2. In one transaction of the service's database, the event id goes into the
   ``inbox`` and the handler runs (it may change state and stage outbox
   events through the unit of work it is given). A redelivered event finds its
   id in the inbox and has no second effect; two consumers racing on one event
   serialize on the inbox row.
3. A failure is retried with exponential backoff, ``consumer_max_attempts`` in
   all; a record that cannot be read, or whose data does not fit its model, is
   not retried. ``UnavailableError`` (a store the effect needs is down) is not the
   record's fault: the consumer restarts from its last commit instead. Then
   the record goes to the dead-letter topic (``dlq.<consumer>``) and the
   ``dead_letters`` table with its error, and the
   partition moves on: a poison event holds its partition for at most the
   backoff.
4. Offsets are committed (auto-commit is off) after the effects of a
   partition's records have committed. A crash before that redelivers them,
   and the inbox absorbs them.

The records a poll returns are handled in one transaction (up to
``chunk_size``, each partition's in order), then their offsets are committed
at once: one commit of each kind for many effects. A consumer with a linger
keeps polling until a chunk is full or the linger is over (the search
indexer's bulk requests flush by size and by time this way). When any of them
fails, that transaction is rolled back and each record runs alone, as above.

Dead letters are redriven on request (``request_redrive``: the admin endpoint
and the ``dead-letters`` command): the running consumer picks each requested
one up within a second and runs it through step 2 again. Shutdown (SIGTERM)
finishes the batch in hand and commits; a rebalance waits for it too. The
consumer's lag per partition, its outcomes and its parked dead letters are
Prometheus metrics. Inbox rows older than ``inbox_retention_s`` are deleted.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from fastapi import APIRouter, Query, Request
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event
from tenx_common.security.dependencies import AdminUser
from tenx_common.web.pagination import Items
from tenx_common.web.problems import ProblemError
from tenx_common.web.timestamps import Timestamp

log = logging.getLogger(__name__)

TRANSACTION_SIZE = 100  # records of a partition handled in one transaction, at most
PARKED = "parked"
REDRIVE_REQUESTED = "redrive_requested"
REDRIVEN = "redriven"


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


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the consumer handles it (also rebuilt from a dead letter)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]


class PermanentError(Exception):
    """A failure that retrying cannot fix: the record is dead-lettered at once."""


class UnavailableError(Exception):
    """A store the effect needs is down: nothing is dead-lettered; the consumer
    stops, waits, and consumes again from its last committed offsets."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str
    data: dict[str, Any]
    time: str | None = None  # when the event occurred (RFC 3339)


def read_envelope(record: Record) -> Envelope:
    try:
        document = orjson.loads(record.value)
        return Envelope(
            id=str(document["id"]),
            type=str(document["type"]),
            data=dict(document["data"]),
            time=document.get("time"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"not a structured CloudEvent: {exc!r}") from exc


Handler = Callable[[UnitOfWork, Any], Awaitable[None]]


class Consumer:
    """A named consumer group of one service, with its handlers by event class."""

    def __init__(
        self,
        *,
        name: str,
        settings: Any,
        uow: Callable[[], UnitOfWork],
        engine: AsyncEngine,
        inbox: Table,
        dead_letters: Table,
        handlers: Mapping[type[Event], Handler],
        tracer: Tracer,
        chunk_size: int = TRANSACTION_SIZE,
        linger_s: float = 0.0,
    ) -> None:
        self.name = name
        self.settings = settings
        self._uow = uow
        self._engine = engine
        self._inbox = inbox
        self._dead_letters = dead_letters
        self._handlers = {cls.TYPE: (cls, handler) for cls, handler in handlers.items()}
        self.topics = sorted({cls.TOPIC for cls in handlers})
        self._tracer = tracer
        self.chunk_size = chunk_size  # records handled (and committed) together, at most
        self.linger_s = linger_s  # how long a poll waits for more records to fill a chunk
        self.stopping = asyncio.Event()
        self._busy = asyncio.Lock()  # held while a batch is handled and committed
        self._outcomes: Counter[str] = Counter()
        self._lag: dict[TopicPartition, int] = {}
        self._parked = 0

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stopping`` is set; a lost broker or database is retried."""
        while not self.stopping.is_set():
            try:
                await self._run()
            except Exception:
                log.exception("consumer %s failed; restarting in 2 s", self.name)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await self.stopping.wait()

    async def _run(self) -> None:
        settings = self.settings
        kafka = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.name,
            client_id=f"{self.name}-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        kafka.subscribe(self.topics, listener=_FinishBatchFirst(self._busy))
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
        )
        await kafka.start()
        await producer.start()
        log.info("consumer %s started on %s", self.name, ", ".join(self.topics))
        next_chores = 0.0
        try:
            while not self.stopping.is_set():
                records = await self._poll(kafka)
                async with self._busy:
                    for at in range(0, len(records), self.chunk_size):
                        if self.stopping.is_set():
                            break  # what is not committed is redelivered
                        chunk = records[at : at + self.chunk_size]
                        await self._consume_many(chunk, producer)
                        await kafka.commit(
                            {
                                TopicPartition(r.topic, r.partition): r.offset + 1
                                for r in chunk  # the last of each partition wins
                            }
                        )
                    self._lag = {
                        tp: max(0, (kafka.highwater(tp) or 0) - await kafka.position(tp))
                        for tp in kafka.assignment()
                    }
                if time.monotonic() >= next_chores:
                    next_chores = time.monotonic() + 1.0
                    await self._chores()
        finally:
            await kafka.stop()  # leaves the group: its partitions move at once
            await producer.stop()
            log.info("consumer %s stopped", self.name)

    async def _poll(self, kafka: AIOKafkaConsumer) -> list[Record]:
        """The next records, each partition's in order; with a linger, polls go on
        until a chunk is full or the linger since the first record is over."""
        size = self.settings.consumer_batch_size
        records = records_of(await kafka.getmany(timeout_ms=500, max_records=size))
        deadline = time.monotonic() + self.linger_s
        while records and len(records) < min(size, self.chunk_size):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await kafka.getmany(
                timeout_ms=max(1, int(left * 1000)), max_records=size - len(records)
            )
            records += records_of(more)
        return records

    async def _chores(self) -> None:
        try:
            await self.redrive_requested()
            async with self._engine.connect() as conn:
                self._parked = int(
                    await conn.scalar(
                        select(func.count()).where(
                            self._dead_letters.c.consumer == self.name,
                            self._dead_letters.c.status == PARKED,
                        )
                    )
                    or 0
                )
        except Exception:
            log.exception("consumer %s: redriving dead letters failed", self.name)

    # -- records -----------------------------------------------------------------

    async def _consume_many(self, records: list[Record], producer: AIOKafkaProducer) -> None:
        """Records in their partitions' order: all in one transaction when they all
        succeed at once; otherwise each in its own, with its retries."""
        if len(records) > 1:
            try:
                outcomes = await self._transaction(records)
            except UnavailableError:
                raise
            except Exception as exc:
                log.info("consumer %s: a batch failed (%r); one by one now", self.name, exc)
            else:
                self._outcomes.update(outcomes)
                return
        for record in records:
            await self._consume(record, producer)

    async def _consume(self, record: Record, producer: AIOKafkaProducer) -> None:
        attempts, error = await self._attempts(record)
        if error is None:
            return
        log.error(
            "consumer %s: %s[%d]@%d dead-lettered after %d attempt(s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            error,
        )
        await producer.send_and_wait(
            dead_letter_topic(self.name),
            key=record.key.encode() if record.key is not None else None,
            value=record.value,
            headers=[(k, v.encode()) for k, v in record.headers.items()]
            + [("tenx-error", error[:1000].encode())],
        )
        await self._park(record, error=error, attempts=attempts)

    async def _attempts(
        self, record: Record, *, max_attempts: int | None = None
    ) -> tuple[int, str | None]:
        """Handle ``record`` with retries; (attempts, the last error or None when handled)."""
        settings = self.settings
        limit = max_attempts or settings.consumer_max_attempts
        for attempt in range(1, limit + 1):
            try:
                outcome = await self.handle(record)
            except UnavailableError:
                raise  # the consumer restarts from its last commit (run)
            except (PermanentError, ValidationError) as exc:
                self._outcomes["dead_lettered"] += 1
                return attempt, _describe(exc)
            except Exception as exc:
                if attempt == limit:
                    self._outcomes["dead_lettered"] += 1
                    return attempt, _describe(exc)
                self._outcomes["retried"] += 1
                delay = min(
                    settings.consumer_backoff_max_s,
                    settings.consumer_backoff_s * 2 ** (attempt - 1),
                )
                log.warning(
                    "consumer %s: %s[%d]@%d failed (attempt %d), retrying in %.1fs: %r",
                    self.name,
                    record.topic,
                    record.partition,
                    record.offset,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
            else:
                self._outcomes[outcome] += 1
                return attempt, None
        raise AssertionError("unreachable")

    async def handle(self, record: Record) -> str:
        """One attempt at one record, in its own transaction. The outcome:
        ``processed``, ``duplicate`` (already in the inbox) or ``skipped`` (no handler)."""
        [outcome] = await self._transaction([record])
        return outcome

    async def _transaction(self, records: list[Record]) -> list[str]:
        """The effects of ``records`` and their inbox rows, in one transaction."""
        parsed = [self._parse(record) for record in records]
        ids = list(dict.fromkeys(found[0].id for found in parsed if found is not None))
        async with self._uow() as uow:
            fresh: set[str] = set()
            if ids:  # one statement for the inbox rows of the whole batch
                inserted = await uow.session.execute(
                    insert(self._inbox)
                    .values(
                        [
                            {"consumer": self.name, "event_id": id_, "processed_at": func.now()}
                            for id_ in ids
                        ]
                    )
                    .on_conflict_do_nothing()
                    .returning(self._inbox.c.event_id)
                )
                fresh = set(inserted.scalars())
            outcomes = []
            for record, found in zip(records, parsed, strict=True):
                if found is None:
                    outcomes.append("skipped")
                    continue
                envelope, event, handler = found
                first = envelope.id in fresh
                fresh.discard(envelope.id)  # the same event twice in a batch: once
                await self._apply(uow, record, envelope, event, handler if first else None)
                outcomes.append("processed" if first else "duplicate")
            await uow.commit()
        return outcomes

    def _parse(self, record: Record) -> tuple[Envelope, Event, Handler] | None:
        """The record's envelope, event and handler; None when it has no handler here.
        Raises when it cannot be read (PermanentError) or fit its model (ValidationError)."""
        envelope = read_envelope(record)
        registered = self._handlers.get(envelope.type)
        if registered is None:
            return None
        model, handler = registered
        return envelope, model.model_validate(envelope.data), handler

    async def _apply(
        self,
        uow: UnitOfWork,
        record: Record,
        envelope: Envelope,
        event: Event,
        handler: Handler | None,
    ) -> None:
        """The effect of one event (none for a duplicate), under its CONSUMER span."""
        with self._tracer.start_as_current_span(**self.process_span(record, envelope)) as span:
            if handler is None:
                span.set_attribute("tenx.duplicate", True)
                return
            try:
                uow.cause = envelope.id
                await handler(uow, event)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def process_span(self, record: Record, envelope: Envelope) -> dict[str, Any]:
        return process_span_options(self.name, record, envelope)

    # -- dead letters ----------------------------------------------------------

    async def _park(self, record: Record, *, error: str, attempts: int) -> None:
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
                    consumer=self.name,
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

    async def redrive_requested(self) -> int:
        """Run every dead letter an operator asked to redrive once more; how many succeeded."""
        table = self._dead_letters
        succeeded = 0
        while True:
            async with self._engine.begin() as conn:
                row = (
                    await conn.execute(
                        select(table)
                        .where(table.c.consumer == self.name, table.c.status == REDRIVE_REQUESTED)
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
                attempts, error = await self._attempts(record, max_attempts=1)
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
                    "consumer %s: dead letter %s redriven: %s", self.name, row.id, error or "ok"
                )

    async def sweep_inbox(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.inbox_retention_s)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(self._inbox).where(
                    self._inbox.c.consumer == self.name, self._inbox.c.processed_at < cutoff
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # -- metrics ---------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "tenx_consumer_lag",
            "Records not yet consumed",
            labels=["consumer", "topic", "partition"],
        )
        for tp, behind in sorted(self._lag.items()):
            lag.add_metric([self.name, tp.topic, str(tp.partition)], behind)
        yield lag
        events = CounterMetricFamily(
            "tenx_consumer_events", "Records handled, by outcome", labels=["consumer", "outcome"]
        )
        for outcome, count in sorted(self._outcomes.items()):
            events.add_metric([self.name, outcome], count)
        yield events
        parked = GaugeMetricFamily(
            "tenx_dead_letters_parked", "Dead letters waiting for an operator", labels=["consumer"]
        )
        parked.add_metric([self.name], self._parked)
        yield parked


def records_of(batches: Mapping[TopicPartition, list[Any]]) -> list[Record]:
    return [  # each partition's in order, one partition after another
        Record(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key.decode() if raw.key is not None else None,
            value=raw.value or b"",
            headers={k: v.decode() for k, v in raw.headers or ()},
        )
        for raws in batches.values()
        for raw in raws
    ]


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are given up only after the batch in hand is handled and committed."""

    def __init__(self, busy: asyncio.Lock) -> None:
        self._busy = busy

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._busy:
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def process_span_options(group: str, record: Record, envelope: Envelope) -> dict[str, Any]:
    """The CONSUMER span of one record: a child of the span that produced it
    (the context comes from the record's own headers, record by record)."""
    return {
        "name": f"{record.topic} process",
        "context": propagate.extract(record.headers),
        "kind": SpanKind.CONSUMER,
        "attributes": {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.consumer.group.name": group,
            "messaging.message.id": envelope.id,
            "messaging.kafka.message.key": record.key or "",
            "messaging.kafka.offset": record.offset,
            "messaging.destination.partition.id": str(record.partition),
            "cloudevents.event_type": envelope.type,
        },
    }


def sampled_out(headers: Mapping[str, str]) -> bool:
    """Whether the record's producer was in a trace that is not recorded."""
    parent = headers.get("traceparent", "")
    return len(parent) == 55 and parent[-2:] in ("00", "02")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:4000]


# -- what operators call (admin endpoint, CLI) -----------------------------------


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


@contextlib.asynccontextmanager
async def running(*consumers: Consumer) -> Any:
    """Run ``consumers`` in the background for the block; stop them gracefully after."""
    tasks = [asyncio.create_task(c.run(), name=f"consumer-{c.name}") for c in consumers]
    try:
        yield tasks
    finally:
        for consumer in consumers:
            consumer.stopping.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    async with asyncio.timeout(15):
                        await task
                except TimeoutError:
                    task.cancel()
                except Exception:
                    log.exception("a consumer ended with an error")


class DeadLetterStatus(StrEnum):
    """A dead letter's status, as the admin routes document it: the values of
    PARKED, REDRIVE_REQUESTED and REDRIVEN at the top of this module."""

    PARKED = "parked"
    REDRIVE_REQUESTED = "redrive_requested"
    REDRIVEN = "redriven"


class DeadLetter(BaseModel):
    """A dead letter as ``list_dead_letters`` gives it (without the record's value)."""

    id: uuid.UUID
    consumer: str
    topic: str
    partition: int
    offset: int
    key: str | None
    event_id: str  # topic:partition:offset when the record was not a CloudEvent
    event_type: str | None
    error: str
    attempts: int
    status: DeadLetterStatus
    failed_at: Timestamp
    redriven_at: Timestamp | None


class RedriveRequested(BaseModel):
    requested: int  # parked dead letters marked for redrive


def dead_letter_router(prefix: str, table: Table) -> APIRouter:
    """``GET {prefix}/dead-letters?status=`` and ``POST {prefix}/dead-letters/{id}/redrive``
    (and ``/redrive`` for all parked ones), for admins."""
    router = APIRouter(prefix=prefix, tags=["operations"])

    def engine(request: Request) -> AsyncEngine:
        engines = request.app.state.container.infra.engines
        assert engines is not None
        primary: AsyncEngine = engines.primary
        return primary

    @router.get("/dead-letters")
    async def dead_letters(
        request: Request,
        _: AdminUser,
        status: Annotated[DeadLetterStatus | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Items[DeadLetter]:
        found = await list_dead_letters(engine(request), table, status=status, limit=limit)
        return Items[DeadLetter].model_validate({"items": found})

    @router.post("/dead-letters/redrive", status_code=202)
    async def redrive_all(request: Request, _: AdminUser) -> RedriveRequested:
        return RedriveRequested(requested=await request_redrive(engine(request), table, None))

    @router.post("/dead-letters/{letter_id}/redrive", status_code=202)
    async def redrive_one(request: Request, letter_id: uuid.UUID, _: AdminUser) -> RedriveRequested:
        requested = await request_redrive(engine(request), table, [letter_id])
        if not requested:
            raise ProblemError(
                status=404, code="not_found", detail="No parked dead letter with this id."
            )
        return RedriveRequested(requested=requested)

    return router
