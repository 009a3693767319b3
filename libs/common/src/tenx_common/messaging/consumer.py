"""The idempotent consumer: how every service turns Kafka events into effects.

A service names its consumer (the Kafka group) and gives one handler per event
class. For each record, in partition order:

1. The CloudEvent is read; a type this consumer has no handler for is skipped.
2. In one transaction of the service's database, the event id goes into the
   ``inbox`` and the handler runs (it may change state and stage outbox
   events through the unit of work it is given). A redelivered event finds its
   id in the inbox and has no second effect; two consumers racing on one event
   serialize on the inbox row.
3. A failure is retried with exponential backoff (from ``consumer_backoff_s``,
   0.2 s, doubling to ``consumer_backoff_max_s``, 5 s), ``consumer_max_attempts``
   (5) in all; a record that cannot be read, or whose data does not fit its
   model, is not retried. ``UnavailableError`` (a store the effect needs is
   down) is not the record's fault: the consumer restarts from its last commit
   instead. Then the record goes to the dead-letter topic (``dlq.<consumer>``, its error in
   the header ``tenx-error``) and the ``dead_letters`` table, and the
   partition moves on: a poison event holds its partition for at most the
   backoff.
4. Offsets are committed (auto-commit is off) after the effects of a
   partition's records have committed, while the next records are polled and
   handled (at most one commit on its way, in order; a rebalance or shutdown
   waits for it). A crash before that redelivers them, and the inbox absorbs
   them.

The records a poll returns are handled in one transaction (up to
``chunk_size``, each partition's in order), then their offsets are committed
at once: one commit of each kind for many effects. A consumer with a linger
keeps polling until a chunk is full or the linger is over (the search
indexer's bulk requests flush by size and by time this way). When any of them
fails, that transaction is rolled back and each record runs alone, as above.

A handler may be a ``SetHandler``: the consecutive records of a chunk that it
handles (none of another handler between them) go to it as one list, in the
chunk's transaction with their inbox rows, so that it writes their effects as
sets (one insert of n rows, not n inserts); each keeps its own CONSUMER span.
On the fallback it gets a list of one.

A consumer may also give a ``BatchHandler``: the records of its events in a
chunk go to it as one list (the search indexer's bulk writes), alongside the
transaction of the others, and take part in all of the above but the inbox.

Dead letters are redriven on request (``request_redrive``: the admin endpoint
and the ``dead-letters`` command): the running consumer picks each requested
one up within a second and runs it through step 2 again. Shutdown (SIGTERM)
finishes the batch in hand, commits and leaves the group; a rebalance waits
for the batch too. A consumer that fails (a lost broker or database) starts
again from its last commit after 2 s. Each event's effect runs under a
CONSUMER span whose parent is the context in the record's headers (the
relay's PRODUCER span). Metrics: ``tenx_consumer_lag{consumer,topic,partition}``,
``tenx_consumer_events_total{consumer,outcome}`` (processed, duplicate, skipped,
retried, dead_lettered, or a batch handler's own) and
``tenx_dead_letters_parked{consumer}``. Inbox rows older than
``inbox_retention_s`` (7 days, longer than any redelivery) are deleted hourly
by the worker.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event
from tenx_common.loops.backoff import backoff_s
from tenx_common.loops.supervised import supervised
from tenx_common.messaging.errors import PermanentError, UnavailableError
from tenx_common.messaging.inbox import InboxStore, SqlInboxStore, dead_letter_topic
from tenx_common.messaging.records import (
    Delivery,
    Envelope,
    Record,
    parse,
    process_span_options,
    records_of,
)

log = logging.getLogger(__name__)

TRANSACTION_SIZE = 100  # records of a partition handled in one transaction, at most

Handler = Callable[[UnitOfWork, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Caused:
    """An event as a ``SetHandler`` gets it: its id (what ``uow.cause`` is for a
    one-at-a-time handler) and its CONSUMER span's context, to write under."""

    cause: str
    event: Any
    context: otel_context.Context


@dataclass(frozen=True, slots=True)
class SetHandler:
    """Handles consecutive events of a chunk as one list, in the chunk's transaction."""

    handle: Callable[[UnitOfWork, list[Caused]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BatchHandler:
    """The records of ``events`` in a chunk, handled as one list by ``handle``.

    ``handle`` gets them in their partitions' order and returns one outcome per
    record (a metric label, e.g. ``indexed``). It runs alongside the database
    transaction of the chunk's other records, not in it, and writes no inbox
    row: its effects must be idempotent on their own (a redelivered record
    comes again). The rest holds: the chunk's offsets are committed once both
    have succeeded; when either fails, each record runs alone (``handle``
    then gets a list of one) with its retries, then is dead-lettered.
    ``handle`` raises ``UnavailableError`` when its store is down and
    ``PermanentError`` for a record that can never succeed."""

    events: Collection[type[Event]]
    handle: Callable[[list[Delivery]], Awaitable[list[str]]]


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
        handlers: Mapping[type[Event], Handler | SetHandler],
        tracer: Tracer,
        batch_handler: BatchHandler | None = None,
        chunk_size: int = TRANSACTION_SIZE,
        linger_s: float = 0.0,
    ) -> None:
        batched = set(batch_handler.events) if batch_handler else set()
        if both := sorted(cls.TYPE for cls in batched & set(handlers)):
            raise ValueError(f"events with a handler and a batch handler: {both}")
        self.name = name
        self.settings = settings
        self.store: InboxStore = SqlInboxStore(
            consumer=name, engine=engine, inbox=inbox, dead_letters=dead_letters
        )
        self._uow = uow
        self._models = {cls.TYPE: cls for cls in (*handlers, *batched)}
        self._handlers = {cls.TYPE: handler for cls, handler in handlers.items()}
        self._batch = batch_handler
        self._batched = {cls.TYPE for cls in batched}
        self.topics = sorted({cls.TOPIC for cls in self._models.values()})
        self.tracer = tracer
        self.chunk_size = chunk_size  # records handled (and committed) together, at most
        self.linger_s = linger_s  # how long a poll waits for more records to fill a chunk
        self.stopping = asyncio.Event()
        self._busy = asyncio.Lock()  # held while a batch is handled and committed
        self._committing: asyncio.Task[None] | None = None  # offsets on their way
        self._outcomes: Counter[str] = Counter()
        self._lag: dict[TopicPartition, int] = {}
        self._parked = 0

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``stopping`` is set; a lost broker or database is retried."""
        await supervised(
            self._run,
            stopping=self.stopping,
            what=f"consumer {self.name} failed; restarting in 2 s",
            pause_s=lambda: 2.0,
            logger=log,
        )

    async def _run(self) -> None:
        settings = self.settings
        kafka = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=self.name,
            client_id=f"{self.name}-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The broker answers a fetch as soon as a record arrives, but
            # aiokafka sends no fetch to a broker while one is in flight: a
            # partition whose records were just handled waits for that fetch,
            # as long as this when the other partitions are quiet. (Longer
            # waits spare an idle broker empty fetches, and cost that much
            # latency at a moderate load.)
            fetch_max_wait_ms=50,
        )
        kafka.subscribe(self.topics, listener=_FinishBatchFirst(self))
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
                        await self.consume_many(chunk, producer)
                        await self.commit_offsets(kafka, chunk)
                    self._lag = {
                        tp: max(0, (kafka.highwater(tp) or 0) - await kafka.position(tp))
                        for tp in kafka.assignment()
                    }
                if time.monotonic() >= next_chores:
                    next_chores = time.monotonic() + 1.0
                    await self._chores()
        finally:
            try:
                await self.offsets_committed()
            except Exception:  # the records are redelivered, and the inbox absorbs them
                log.warning("consumer %s: its last offsets were not committed", self.name)
            await kafka.stop()  # leaves the group: its partitions move at once
            await producer.stop()
            log.info("consumer %s stopped", self.name)

    async def commit_offsets(self, kafka: AIOKafkaConsumer, chunk: list[Record]) -> None:
        """Send the offsets after ``chunk`` (its effects have committed) once the
        previous chunk's are committed, and return: they go to the broker while
        the next records are polled and handled. A crash before they land only
        redelivers the chunk, and the inbox absorbs it."""
        await self.offsets_committed()
        self._committing = asyncio.create_task(
            kafka.commit(
                {
                    TopicPartition(r.topic, r.partition): r.offset + 1
                    for r in chunk  # the last of each partition wins
                }
            )
        )

    async def offsets_committed(self) -> None:
        """Until the offsets last sent to the broker are committed (or failed:
        raised here, and the consumer starts again from its last commit)."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

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
            self._parked = await self.store.parked()
        except Exception:
            log.exception("consumer %s: redriving dead letters failed", self.name)

    # -- records -----------------------------------------------------------------

    async def consume_many(self, records: list[Record], producer: AIOKafkaProducer) -> None:
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
        await self.store.park(record, error=error, attempts=attempts)

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
                delay = backoff_s(
                    attempt,
                    base_s=settings.consumer_backoff_s,
                    max_s=settings.consumer_backoff_max_s,
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
        ``processed``, ``duplicate`` (already in the inbox), ``skipped`` (no
        handler), or what the batch handler said."""
        [outcome] = await self._transaction([record])
        return outcome

    async def _transaction(self, records: list[Record]) -> list[str]:
        """The effects of ``records``: the batch handler's by it, the others' with
        their inbox rows in one transaction, at the same time; an outcome each."""
        parsed = [parse(record, self._models) for record in records]
        batched = [d is not None and d.envelope.type in self._batched for d in parsed]
        batch = [d for d, b in zip(parsed, batched, strict=True) if b and d is not None]
        alone = [d for d, b in zip(parsed, batched, strict=True) if not b]
        task = asyncio.create_task(self._batch_effects(batch)) if batch else None
        try:
            apart = iter(await self._in_transaction(alone) if alone else [])
            together = iter(await task if task else [])
        except BaseException:
            if task is not None:  # its writes end before the chunk is tried again
                await asyncio.gather(task, return_exceptions=True)
            raise
        return [next(together if b else apart) for b in batched]

    async def _batch_effects(self, batch: list[Delivery]) -> list[str]:
        assert self._batch is not None  # there is a batch only when there is a handler
        outcomes = await self._batch.handle(batch)
        if len(outcomes) != len(batch):
            raise ValueError(f"batch handler: {len(outcomes)} outcomes for {len(batch)} records")
        return outcomes

    async def _in_transaction(self, deliveries: list[Delivery | None]) -> list[str]:
        """The effects of ``deliveries`` (None: no handler) and their inbox rows, in
        one transaction. A set handler's consecutive records go to it together."""
        ids = list(dict.fromkeys(d.envelope.id for d in deliveries if d is not None))
        async with self._uow() as uow:
            fresh = await self.store.claim(uow, ids)
            outcomes = []
            run: list[Delivery] = []  # consecutive records of one set handler
            run_handler: SetHandler | None = None
            for delivery in deliveries:
                if delivery is None:
                    outcomes.append("skipped")
                    continue
                first = delivery.envelope.id in fresh
                fresh.discard(delivery.envelope.id)  # the same event twice in a batch: once
                handler = self._handlers[delivery.envelope.type] if first else None
                if run_handler is not None and handler is not None and handler is not run_handler:
                    await self._apply_set(uow, run_handler, run)
                    run, run_handler = [], None
                if isinstance(handler, SetHandler):
                    run.append(delivery)
                    run_handler = handler
                else:
                    await self._apply(uow, delivery, handler)
                outcomes.append("processed" if first else "duplicate")
            if run_handler is not None:
                await self._apply_set(uow, run_handler, run)
            await uow.commit()
        return outcomes

    async def _apply(self, uow: UnitOfWork, delivery: Delivery, handler: Handler | None) -> None:
        """The effect of one event (none for a duplicate), under its CONSUMER span."""
        envelope = delivery.envelope
        span_options = self.process_span(delivery.record, envelope)
        with self.tracer.start_as_current_span(**span_options) as span:
            if handler is None:
                span.set_attribute("tenx.duplicate", True)
                return
            try:
                uow.cause = envelope.id
                await handler(uow, delivery.event)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    async def _apply_set(self, uow: UnitOfWork, handler: SetHandler, run: list[Delivery]) -> None:
        """The effects of ``run`` by its set handler, each under its CONSUMER span."""
        spans = [self.tracer.start_span(**self.process_span(d.record, d.envelope)) for d in run]
        try:
            await handler.handle(
                uow,
                [
                    Caused(d.envelope.id, d.event, trace.set_span_in_context(span))
                    for d, span in zip(run, spans, strict=True)
                ],
            )
        except Exception as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    def process_span(self, record: Record, envelope: Envelope) -> dict[str, Any]:
        return process_span_options(self.name, record, envelope)

    # -- dead letters and the inbox -----------------------------------------------

    async def redrive_requested(self) -> int:
        """Run every dead letter an operator asked to redrive once more; how many succeeded."""
        return await self.store.redrive(lambda record: self._attempts(record, max_attempts=1))

    async def sweep_inbox(self) -> int:
        return await self.store.sweep(retention_s=self.settings.inbox_retention_s)

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


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are given up only after the batch in hand is handled and its
    offsets are committed."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._consumer._busy:
            with contextlib.suppress(Exception):  # failed: redelivered to the next owner
                await self._consumer.offsets_committed()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:4000]


@contextlib.asynccontextmanager
async def running(*consumers: Consumer) -> AsyncIterator[list[asyncio.Task[None]]]:
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
