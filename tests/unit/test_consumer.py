"""The consumer's decisions, on fakes at its ports (unit of work, inbox store,
dead-letter producer): one transaction per chunk, the fallback to one record
at a time, retries and parking, and the batch handler beside the inbox path."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, cast

import orjson
import pytest
from elasticsearch import AsyncElasticsearch
from opentelemetry.trace import NoOpTracer
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event, cloud_event
from tenx_common.events.catalog_products import ProductCreated
from tenx_common.messaging import (
    BatchHandler,
    Caused,
    Consumer,
    Delivery,
    Handler,
    PermanentError,
    Record,
    SetHandler,
    UnavailableError,
    dead_letter_table,
    inbox_table,
)
from tenx_common.messaging.consumer import _FinishBatchFirst
from tenx_common.messaging.inbox import Attempt
from tenx_common.settings import ConsumerSettings
from tenx_search_indexer.service_layer.indexing import Indexer
from tests.unit.conftest import CLOSED


class Noted(Event):
    """Handled one at a time, through the inbox."""

    TOPIC: ClassVar[str] = "test.notes"
    TYPE: ClassVar[str] = "tenx.test.noted.v1"
    key: str
    poison: bool = False

    def aggregate_id(self) -> str:
        return self.key


class Indexed(Event):
    """Handled by the batch handler."""

    TOPIC: ClassVar[str] = "test.documents"
    TYPE: ClassVar[str] = "tenx.test.indexed.v1"
    key: str
    poison: bool = False

    def aggregate_id(self) -> str:
        return self.key


class Listed(Event):
    """Handled by a set handler, in the transaction."""

    TOPIC: ClassVar[str] = "test.notes"
    TYPE: ClassVar[str] = "tenx.test.listed.v1"
    key: str
    poison: bool = False

    def aggregate_id(self) -> str:
        return self.key


@dataclass
class World:
    """What the fakes committed, and the order things happened in."""

    inbox: set[str] = field(default_factory=set)
    effects: list[str] = field(default_factory=list)
    parked: list[tuple[Record, str, int]] = field(default_factory=list)
    transactions: int = 0
    timeline: list[str] = field(default_factory=list)


class FakeUnitOfWork:
    """Its effects and inbox rows reach the world only when it commits."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.effects: list[str] = []
        self.claimed: set[str] = set()
        self.cause: str | None = None

    async def __aenter__(self) -> Self:
        self.world.transactions += 1
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def commit(self) -> None:
        self.world.inbox |= self.claimed
        self.world.effects += self.effects


class FakeInboxStore:
    def __init__(self, world: World, letters: Sequence[Record] = ()) -> None:
        self.world = world
        self.letters = list(letters)  # dead letters an operator asked to redrive

    async def claim(self, uow: UnitOfWork, ids: Sequence[str]) -> set[str]:
        fresh = set(ids) - self.world.inbox
        cast(FakeUnitOfWork, uow).claimed |= fresh
        return fresh

    async def park(self, record: Record, *, error: str, attempts: int) -> None:
        self.world.parked.append((record, error, attempts))

    async def parked(self) -> int:
        return len(self.world.parked)

    async def redrive(self, attempt: Attempt) -> int:
        results = [await attempt(letter) for letter in self.letters]
        return sum(error is None for _, error in results)

    async def sweep(self, *, retention_s: float) -> int:
        return 0


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []

    async def send_and_wait(
        self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, value, dict(headers)))


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"postgresql+asyncpg://x@{CLOSED}/x")  # never connected
    yield engine
    await engine.dispose()


def note(world: World) -> Handler:
    async def apply(uow: UnitOfWork, event: Any) -> None:
        world.timeline.append(f"noted {event.key}")
        if event.poison:
            raise ValueError(f"cannot digest {event.key}")
        cast(FakeUnitOfWork, uow).effects.append(event.key)

    return apply


def listing(world: World) -> SetHandler:
    async def apply(uow: UnitOfWork, items: list[Caused]) -> None:
        keys = [item.event.key for item in items]
        world.timeline.append(f"listed {' '.join(keys)}")
        if any(item.event.poison for item in items):
            raise ValueError("cannot list a poison")
        assert all(item.cause for item in items)
        cast(FakeUnitOfWork, uow).effects.extend(keys)

    return SetHandler(apply)


def index(world: World) -> Callable[[list[Delivery]], Awaitable[list[str]]]:
    async def write(deliveries: list[Delivery]) -> list[str]:
        await asyncio.sleep(0.01)  # a write that takes a while, beside the transaction
        keys = [cast(Indexed, d.event).key for d in deliveries]
        world.timeline.append(f"indexed {' '.join(keys)}")
        poisoned = [d for d in deliveries if cast(Indexed, d.event).poison]
        if poisoned:
            raise PermanentError(f"refused {poisoned[0].envelope.id}")
        return ["indexed"] * len(deliveries)

    return write


def build(
    world: World,
    engine: AsyncEngine,
    *,
    handlers: Mapping[type[Event], Handler | SetHandler] | None = None,
    batch: Callable[[list[Delivery]], Awaitable[list[str]]] | None = None,
    letters: Sequence[Record] = (),
) -> Consumer:
    consumer = Consumer(
        name="unit",
        settings=ConsumerSettings(consumer_max_attempts=3, consumer_backoff_s=0),
        uow=lambda: cast(UnitOfWork, FakeUnitOfWork(world)),
        engine=engine,
        inbox=inbox_table(MetaData()),
        dead_letters=dead_letter_table(MetaData()),
        handlers={Noted: note(world)} if handlers is None else handlers,
        tracer=NoOpTracer(),
        batch_handler=BatchHandler(events=[Indexed], handle=batch) if batch else None,
    )
    consumer.store = FakeInboxStore(world, letters)
    return consumer


def records(*documents: dict[str, Any] | bytes) -> list[Record]:
    return [
        Record(
            topic="test.notes",
            partition=0,
            offset=offset,
            key="k",
            value=document if isinstance(document, bytes) else orjson.dumps(document),
            headers={},
        )
        for offset, document in enumerate(documents)
    ]


def event(
    cls: type[Noted] | type[Indexed] | type[Listed], key: str, *, poison: bool = False
) -> dict[str, Any]:
    return cloud_event(cls(key=key, poison=poison), source="/tenx/test")


def outcomes(consumer: Consumer) -> dict[str, float]:
    [events] = [m for m in consumer.collect() if m.name == "tenx_consumer_events"]
    return {s.labels["outcome"]: s.value for s in events.samples if s.name.endswith("_total")}


async def test_a_chunk_is_one_transaction_and_a_duplicate_in_it_has_no_second_effect(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine)
    a = event(Noted, "a")
    other = {**event(Noted, "x"), "type": "tenx.test.unknown.v1"}
    await consumer.consume_many(records(a, a, event(Noted, "b"), other), FakeProducer())
    assert world.transactions == 1
    assert world.effects == ["a", "b"]
    assert outcomes(consumer) == {"processed": 2, "duplicate": 1, "skipped": 1}


async def test_a_redelivered_chunk_finds_its_events_in_the_inbox(engine: AsyncEngine) -> None:
    world = World()
    consumer = build(world, engine)
    chunk = records(event(Noted, "a"), event(Noted, "b"))
    await consumer.consume_many(chunk, FakeProducer())
    await consumer.consume_many(chunk, FakeProducer())  # a crash before the offsets' commit
    assert world.effects == ["a", "b"]
    assert outcomes(consumer) == {"processed": 2, "duplicate": 2}


async def test_a_failing_chunk_is_rolled_back_and_its_records_run_one_at_a_time(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine)
    producer = FakeProducer()
    chunk = records(event(Noted, "a"), event(Noted, "p", poison=True), event(Noted, "c"))
    await consumer.consume_many(chunk, producer)
    assert world.effects == ["a", "c"]  # the chunk's "a" was rolled back, then done alone
    assert world.timeline == ["noted a", "noted p", "noted a", *["noted p"] * 3, "noted c"]
    [(parked, error, attempts)] = world.parked
    assert (parked, attempts) == (chunk[1], 3)
    assert error == "ValueError: cannot digest p"
    [(topic, value, headers)] = producer.sent
    assert (topic, value) == ("dlq.unit", chunk[1].value)
    assert headers["tenx-error"] == error.encode()
    assert outcomes(consumer) == {"processed": 2, "retried": 2, "dead_lettered": 1}


async def test_a_record_that_cannot_be_read_or_fit_its_model_is_parked_without_retries(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine)
    misfit = {**event(Noted, "m"), "data": {"key": 1, "colour": "red"}}
    await consumer.consume_many(records(b"not json", misfit, event(Noted, "a")), FakeProducer())
    assert [(attempts, error.split(":")[0]) for _, error, attempts in world.parked] == [
        (1, "PermanentError"),
        (1, "ValidationError"),
    ]
    assert world.effects == ["a"]
    assert outcomes(consumer) == {"processed": 1, "dead_lettered": 2}


async def test_an_unavailable_store_parks_nothing_and_stops_the_chunk(engine: AsyncEngine) -> None:
    world = World()

    async def down(uow: UnitOfWork, event: Any) -> None:
        raise UnavailableError("the store is down")

    consumer = build(world, engine, handlers={Noted: down})
    producer = FakeProducer()
    with pytest.raises(UnavailableError):
        await consumer.consume_many(records(event(Noted, "a"), event(Noted, "b")), producer)
    assert world.parked == []
    assert producer.sent == []


async def test_the_batch_handler_gets_its_events_as_one_list_beside_the_transaction(
    engine: AsyncEngine,
) -> None:
    world = World()
    seen: list[list[str]] = []

    async def write(deliveries: list[Delivery]) -> list[str]:
        seen.append([d.envelope.id for d in deliveries])
        return ["indexed", "stale"]

    consumer = build(world, engine, batch=write)
    chunk = (event(Indexed, "d1"), event(Noted, "a"), event(Indexed, "d2"))
    await consumer.consume_many(records(*chunk), FakeProducer())
    assert seen == [[chunk[0]["id"], chunk[2]["id"]]]  # in order, once
    assert world.inbox == {chunk[1]["id"]}  # the batch handler's events write no inbox row
    assert world.effects == ["a"]
    assert outcomes(consumer) == {"indexed": 1, "processed": 1, "stale": 1}


async def test_a_chunk_of_batch_events_only_opens_no_transaction(engine: AsyncEngine) -> None:
    world = World()
    consumer = build(world, engine, batch=index(world))
    await consumer.consume_many(records(event(Indexed, "d1"), event(Indexed, "d2")), FakeProducer())
    assert world.transactions == 0
    assert world.timeline == ["indexed d1 d2"]


async def test_a_failing_batch_falls_back_to_one_record_at_a_time(engine: AsyncEngine) -> None:
    world = World()
    consumer = build(world, engine, batch=index(world))
    chunk = records(event(Indexed, "d1"), event(Indexed, "p", poison=True), event(Indexed, "d2"))
    await consumer.consume_many(chunk, FakeProducer())
    assert world.timeline == ["indexed d1 p d2", "indexed d1", "indexed p", "indexed d2"]
    [(parked, error, attempts)] = world.parked  # refused for good: parked at once
    assert (parked, attempts) == (chunk[1], 1)
    assert error.startswith("PermanentError: refused")
    assert outcomes(consumer) == {"indexed": 2, "dead_lettered": 1}


async def test_the_batch_ends_before_a_failed_transaction_is_tried_again(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine, batch=index(world))
    chunk = records(event(Indexed, "d1"), event(Noted, "p", poison=True))
    await consumer.consume_many(chunk, FakeProducer())
    assert world.timeline == ["noted p", "indexed d1", "indexed d1", *["noted p"] * 3]
    assert [record for record, _, _ in world.parked] == [chunk[1]]


async def test_a_batch_handler_that_is_unavailable_parks_nothing(engine: AsyncEngine) -> None:
    world = World()

    async def down(deliveries: list[Delivery]) -> list[str]:
        raise UnavailableError("elasticsearch: down")

    consumer = build(world, engine, batch=down)
    with pytest.raises(UnavailableError):
        await consumer.consume_many(records(event(Indexed, "d1")), FakeProducer())
    assert world.parked == []


async def test_a_batch_handler_owes_an_outcome_per_record(engine: AsyncEngine) -> None:
    world = World()

    async def short(deliveries: list[Delivery]) -> list[str]:
        return []

    consumer = build(world, engine, batch=short)
    await consumer.consume_many(records(event(Indexed, "d1")), FakeProducer())
    [(_, error, attempts)] = world.parked
    assert (error, attempts) == ("ValueError: batch handler: 0 outcomes for 1 records", 3)


def test_an_event_has_a_handler_or_a_batch_handler_not_both(engine: AsyncEngine) -> None:
    world = World()
    with pytest.raises(ValueError, match=r"tenx\.test\.indexed\.v1"):
        build(world, engine, handlers={Indexed: note(world)}, batch=index(world))


async def test_a_redriven_dead_letter_gets_one_attempt(engine: AsyncEngine) -> None:
    world = World()
    letters = records(event(Noted, "p", poison=True), event(Noted, "a"))
    consumer = build(world, engine, letters=letters)
    assert await consumer.redrive_requested() == 1
    assert world.timeline == ["noted p", "noted a"]
    assert world.effects == ["a"]


async def test_the_metrics_keep_their_names_and_labels(engine: AsyncEngine) -> None:
    world = World()
    consumer = build(world, engine)
    await consumer.consume_many(records(event(Noted, "a")), FakeProducer())
    families = {m.name: m for m in consumer.collect()}
    assert set(families) == {
        "tenx_consumer_lag",
        "tenx_consumer_events",
        "tenx_dead_letters_parked",
    }
    [sample] = families["tenx_consumer_events"].samples
    assert sample.name == "tenx_consumer_events_total"
    assert sample.labels == {"consumer": "unit", "outcome": "processed"}
    assert families["tenx_dead_letters_parked"].samples[0].labels == {"consumer": "unit"}


class FakeElasticsearch:
    """Answers each bulk request; a document whose stored version is as new gets 409."""

    def __init__(self, *, stored: Mapping[str, int]) -> None:
        self.stored = dict(stored)
        self.requests: list[list[str]] = []

    async def bulk(self, *, operations: Any) -> dict[str, Any]:
        actions = [orjson.loads(line)["index"] for line in bytes(operations).splitlines()[::2]]
        self.requests.append([action["_id"] for action in actions])
        items = []
        for action in actions:
            stale = self.stored.get(action["_id"], 0) >= action["version"]
            self.stored[action["_id"]] = max(self.stored.get(action["_id"], 0), action["version"])
            items.append({"index": {"_id": action["_id"], "status": 409 if stale else 201}})
        return {"items": items}


async def test_the_indexer_writes_its_documents_through_the_batch_handler(
    engine: AsyncEngine,
) -> None:
    world = World()
    products = [
        ProductCreated(
            product_id=uuid.uuid4(),
            version=version,
            sku=f"sku-{n}",
            name="Blue mug",
            description="",
            category="kitchen",
            price_cents=900,
            currency="EUR",
            stock=3,
        )
        for n, version in enumerate((1, 1, 2))
    ]
    es = FakeElasticsearch(stored={str(products[1].product_id): 1})  # already written

    async def erased(users: set[str]) -> set[str]:
        return set()

    indexer = Indexer(
        es=cast(AsyncElasticsearch, es),
        erased=erased,
        name="unit",
        settings=ConsumerSettings(consumer_backoff_s=0),
        uow=lambda: cast(UnitOfWork, FakeUnitOfWork(world)),
        engine=engine,
        inbox=inbox_table(MetaData()),
        dead_letters=dead_letter_table(MetaData()),
        handlers={},
        tracer=NoOpTracer(),
    )
    indexer.store = FakeInboxStore(world)
    chunk = records(*(cloud_event(p, source="/tenx/test") for p in products))
    await indexer.consume_many(chunk, FakeProducer())
    assert es.requests == [[str(p.product_id) for p in products]]  # one bulk request
    assert world.transactions == 0  # no inbox: the external versions absorb redeliveries
    assert outcomes(indexer) == {"indexed": 2, "stale": 1}
    [freshness] = indexer.freshness.collect()
    [count] = [s for s in freshness.samples if s.name.endswith("_count")]
    assert count.value == 2


async def test_a_set_handler_gets_each_run_of_its_events_as_one_list_in_the_transaction(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine, handlers={Noted: note(world), Listed: listing(world)})
    a = event(Listed, "a")
    chunk = records(a, event(Listed, "b"), a, event(Noted, "n"), event(Listed, "c"))

    await consumer.consume_many(chunk, FakeProducer())

    # a duplicate has no effect and does not end a run; another handler's event does
    assert world.timeline == ["listed a b", "noted n", "listed c"]
    assert world.transactions == 1
    assert world.effects == ["a", "b", "n", "c"]  # in the chunk's order
    assert outcomes(consumer) == {"processed": 4, "duplicate": 1}


async def test_a_failing_set_falls_back_to_one_record_at_a_time(engine: AsyncEngine) -> None:
    world = World()
    consumer = build(world, engine, handlers={Listed: listing(world)})
    chunk = records(event(Listed, "a"), event(Listed, "p", poison=True), event(Listed, "c"))

    await consumer.consume_many(chunk, FakeProducer())

    assert world.timeline == ["listed a p c", "listed a", *["listed p"] * 3, "listed c"]
    assert world.effects == ["a", "c"]
    assert [attempts for _, _, attempts in world.parked] == [3]


class SlowCommits:
    """A Kafka consumer's ``commit``: each takes a while, and says when it began and ended."""

    def __init__(self, world: World, *, fail: bool = False) -> None:
        self.world = world
        self.fail = fail

    async def commit(self, offsets: dict[Any, int]) -> None:
        [offset] = offsets.values()
        self.world.timeline.append(f"commit {offset} sent")
        await asyncio.sleep(0.02)
        if self.fail:
            raise ConnectionError("the coordinator went away")
        self.world.timeline.append(f"commit {offset} done")


async def test_a_chunks_offsets_go_out_while_the_next_is_handled_one_commit_at_a_time(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine)
    kafka = cast(Any, SlowCommits(world))
    first, second = records(event(Noted, "a")), records(event(Noted, "b"), event(Noted, "c"))
    await consumer.commit_offsets(kafka, first)
    await asyncio.sleep(0)  # the next chunk's first I/O: the commit's task runs
    world.timeline.append("handling the next chunk")
    await consumer.commit_offsets(kafka, second[1:])
    await asyncio.sleep(0)
    world.timeline.append("the next chunk's offsets on their way")
    await consumer.offsets_committed()
    assert world.timeline == [
        "commit 1 sent",  # the first chunk's last offset, plus one
        "handling the next chunk",
        "commit 1 done",  # before the next chunk's offsets are sent: in order
        "commit 2 sent",
        "the next chunk's offsets on their way",
        "commit 2 done",
    ]


async def test_a_rebalance_waits_for_the_offsets_on_their_way(engine: AsyncEngine) -> None:
    world = World()
    consumer = build(world, engine)
    listener = _FinishBatchFirst(consumer)
    await consumer.commit_offsets(cast(Any, SlowCommits(world)), records(event(Noted, "a")))
    await listener.on_partitions_revoked(set())
    world.timeline.append("partitions given up")
    assert world.timeline == ["commit 1 sent", "commit 1 done", "partitions given up"]


async def test_offsets_that_failed_to_commit_fail_the_loop_at_the_next_chunk(
    engine: AsyncEngine,
) -> None:
    world = World()
    consumer = build(world, engine)
    kafka = cast(Any, SlowCommits(world, fail=True))
    await consumer.commit_offsets(kafka, records(event(Noted, "a")))
    with pytest.raises(ConnectionError):  # the consumer starts again from its last commit
        await consumer.commit_offsets(kafka, records(event(Noted, "b")))
    assert world.timeline == ["commit 1 sent"]
