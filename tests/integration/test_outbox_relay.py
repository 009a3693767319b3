"""The outbox relay on the real database and broker: two relays publish every
committed event exactly once, each key's events in the order they were
written, under the trace context stored in the row."""

import asyncio
import json
import uuid
from collections import defaultdict
from typing import NoReturn

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from tenx_api.adapters.orm import outbox
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_common.data.uow import UnitOfWork
from tenx_common.events.catalog_products import TOPIC, StockChangedV1
from tenx_common.messaging import relay
from tenx_common.messaging.relay import Relay
from tests.support import processes
from tests.support.stack import publish_a_batch

KEYS = 10
VERSIONS = 10


async def test_two_relays_publish_each_event_once_in_key_order(
    api_settings: ApiSettings, unique: str
) -> None:
    engine = primary_engine(api_settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    tracer = TracerProvider().get_tracer("test")
    products = [uuid.uuid4() for _ in range(KEYS)]
    with tracer.start_as_current_span("writer") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        for version in range(1, VERSIONS + 1):  # one transaction per version, all keys
            async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
                for product in products:
                    await uow.publish(StockChangedV1(product_id=product, version=version, stock=1))
                await uow.commit()
    keys = {str(p) for p in products}

    relays = [Relay(api_settings, outbox) for _ in range(2)]
    running = [asyncio.create_task(r.run()) for r in relays]
    try:
        async with asyncio.timeout(120):
            while True:
                async with sessions() as session:
                    waiting = await session.scalar(
                        select(outbox.c.id)
                        .where(outbox.c.key.in_(keys), outbox.c.published_at.is_(None))
                        .limit(1)
                    )
                if waiting is None:
                    break
                await asyncio.sleep(0.2)
    finally:
        for r in relays:
            r.stopping.set()
        await asyncio.gather(*running)
        await engine.dispose()

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=api_settings.kafka_bootstrap_servers,
        group_id=f"it-relay-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, list[int]] = defaultdict(list)
    ids: list[str] = []
    try:
        async with asyncio.timeout(60):
            while sum(len(v) for v in seen.values()) < KEYS * VERSIONS:
                batch = await consumer.getmany(timeout_ms=1000)
                for record in (r for records in batch.values() for r in records):
                    key = (record.key or b"").decode()
                    if key not in keys:
                        continue
                    event = json.loads(record.value or b"{}")
                    headers = dict(record.headers)
                    assert headers["content-type"] == b"application/cloudevents+json"
                    assert trace_id in headers["traceparent"].decode()
                    seen[key].append(event["data"]["version"])
                    ids.append(event["id"])
        await asyncio.sleep(2)  # anything published twice would arrive by now
        batch = await consumer.getmany(timeout_ms=2000)
        extra = [
            r for records in batch.values() for r in records if (r.key or b"").decode() in keys
        ]
    finally:
        await consumer.stop()
    assert extra == []
    assert len(ids) == len(set(ids)) == KEYS * VERSIONS
    assert all(versions == list(range(1, VERSIONS + 1)) for versions in seen.values())


async def test_a_batch_whose_commit_is_lost_is_published_again(
    api_settings: ApiSettings, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own outbox table, so the stack's relays do not take these rows.
    table = outbox.to_metadata(MetaData(), name=f"it_outbox_{unique}")
    table.indexes.clear()  # index names are per schema; this table needs none
    engine = primary_engine(api_settings)
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
    producer = AIOKafkaProducer(
        bootstrap_servers=api_settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    tracer = TracerProvider().get_tracer("test")
    key = uuid.uuid4()
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with UnitOfWork(sessions, outbox=table, source="/tenx/test") as uow:
            for version in (1, 2, 3):
                await uow.publish(StockChangedV1(product_id=key, version=version, stock=1))
            await uow.commit()

        sent = relay.Batches.sent

        async def crash(batches: relay.Batches) -> NoReturn:
            await sent(batches)  # every row acknowledged by the broker
            raise RuntimeError("the relay died before its commit")

        monkeypatch.setattr(relay.Batches, "sent", crash)  # after publishing, before the commit
        with pytest.raises(RuntimeError):
            await publish_a_batch(engine, table, producer, tracer)
        monkeypatch.undo()
        async with engine.connect() as conn:
            unpublished = await conn.scalar(
                select(func.count()).select_from(table).where(table.c.published_at.is_(None))
            )
        assert unpublished == 3  # the rollback kept them: they go out again
        await publish_a_batch(engine, table, producer, tracer)
    finally:
        await producer.stop()
        async with engine.begin() as conn:
            await conn.run_sync(table.drop)
        await engine.dispose()

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=api_settings.kafka_bootstrap_servers,
        group_id=f"it-relay-again-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    ids: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(ids) < 6:
                batch = await consumer.getmany(timeout_ms=1000)
                ids += [
                    json.loads(r.value or b"{}")["id"]
                    for records in batch.values()
                    for r in records
                    if r.key == str(key).encode()
                ]
    finally:
        await consumer.stop()
    # At least once: each event twice, under the same id, for consumers to drop.
    assert len(ids) == 6
    assert len(set(ids)) == 3


async def test_a_relay_whose_broker_is_down_keeps_trying_and_is_not_ready(
    api_settings: ApiSettings,
) -> None:
    nowhere = api_settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    stuck = Relay(nowhere, outbox)
    task = asyncio.create_task(stuck.run())
    try:
        await asyncio.sleep(3)
        assert not task.done(), "a relay must outlive a broker that is down"
        assert not stuck.connected
        with pytest.raises(ConnectionError):
            await stuck.check()
    finally:
        stuck.stopping.set()
        async with asyncio.timeout(20):
            await task


# The local stack runs each service's relay in its worker (relay_in_worker):
# api-worker, auth-worker, notify-worker, and the search-indexer's one process.
@pytest.mark.parametrize(
    "port",
    [
        processes.port(name)
        for name in ("api-worker", "auth-worker", "notify-worker", "search-indexer")
    ],
)
async def test_each_relay_of_the_stack_is_ready_and_counts_what_it_publishes(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["relay"] == "up"
        metrics = (await client.get("/metrics")).text
    assert "tenx_outbox_published_total{" in metrics
