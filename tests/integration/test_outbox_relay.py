"""The outbox relay on the real database and broker: two relays publish every
committed event exactly once, each key's events in the order they were
written, under the trace context stored in the row."""

import asyncio
import json
import uuid
from collections import defaultdict

from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tenx_api.adapters.orm import outbox
from tenx_api.settings import Settings as ApiSettings
from tenx_common.events.catalog_products import TOPIC, StockChanged
from tenx_common.relay import Relay
from tenx_common.uow import UnitOfWork

KEYS = 10
VERSIONS = 10


async def test_two_relays_publish_each_event_once_in_key_order(
    api_settings: ApiSettings, unique: str
) -> None:
    engine = create_async_engine(api_settings.primary_url())
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    tracer = TracerProvider().get_tracer("test")
    products = [uuid.uuid4() for _ in range(KEYS)]
    with tracer.start_as_current_span("writer") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        for version in range(1, VERSIONS + 1):  # one transaction per version, all keys
            async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
                for product in products:
                    await uow.publish(StockChanged(product_id=product, version=version, stock=1))
                await uow.commit()
    keys = {str(p) for p in products}

    relays = [Relay(api_settings, outbox) for _ in range(2)]
    running = [asyncio.create_task(relay.run()) for relay in relays]
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
        for relay in relays:
            relay.stopping.set()
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
