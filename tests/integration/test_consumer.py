"""The idempotent consumer on the real broker and database: redeliveries,
duplicates, reordering and crashes never give a second effect, a poison event
is parked without blocking its partition and is redriven after a fix."""

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import MetaData, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from tenx_api.adapters.orm import dead_letters, inbox, outbox
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_common.data.uow import UnitOfWork
from tenx_common.events import cloud_event
from tenx_common.messaging import relay
from tenx_common.messaging.consumer import Consumer
from tenx_common.messaging.inbox import (
    PARKED,
    REDRIVEN,
    dead_letter_topic,
    list_dead_letters,
    request_redrive,
)
from tenx_common.messaging.topics import TopicSettings, ensure_topics
from tests.support import consumer_probe
from tests.support.consumer_probe import FIXED, probe_class
from tests.support.stack import publish_a_batch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def engine(api_settings: ApiSettings, unique: str) -> AsyncIterator[AsyncEngine]:
    engine = primary_engine(api_settings)
    await consumer_probe.create_tables(engine, unique)
    topic = probe_class(unique).TOPIC
    names = (topic, dead_letter_topic(f"it-{unique}"))
    await ensure_topics(TopicSettings(), names=names)
    yield engine
    await consumer_probe.drop_tables(engine, unique)
    async with engine.begin() as conn:
        for table in ("inbox", "dead_letters"):
            await conn.execute(
                text(f"DELETE FROM {table} WHERE consumer = :c"), {"c": f"it-{unique}"}
            )
    await engine.dispose()
    admin = AIOKafkaAdminClient(bootstrap_servers=api_settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


@pytest.fixture
async def producer(api_settings: ApiSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=api_settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    yield producer
    await producer.stop()


async def send(
    producer: AIOKafkaProducer, document: dict[str, Any] | bytes, *, topic: str, key: str
) -> None:
    value = document if isinstance(document, bytes) else json.dumps(document).encode()
    await producer.send_and_wait(topic, key=key.encode(), value=value)


def probe(unique: str, key: str, version: int, *, poison: bool = False) -> dict[str, Any]:
    event = probe_class(unique)(key=key, version=version, poison=poison)
    return cloud_event(event, source="/tenx/test")


async def effects(engine: AsyncEngine, unique: str) -> list[tuple[str, int]]:
    _, table = consumer_probe.tables(unique)
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT event_key, version FROM {table} ORDER BY 1, 2"))
        return [(row[0], row[1]) for row in rows]


async def state(engine: AsyncEngine, unique: str) -> dict[str, int]:
    table, _ = consumer_probe.tables(unique)
    async with engine.connect() as conn:
        return {
            row[0]: row[1] for row in await conn.execute(text(f"SELECT key, version FROM {table}"))
        }


async def until(check: Any, *, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not so after {timeout_s} s")


async def consuming(consumer: Consumer) -> asyncio.Task[None]:
    return asyncio.create_task(consumer.run())


async def stop(consumer: Consumer, task: asyncio.Task[None]) -> None:
    consumer.stopping.set()
    await asyncio.wait_for(task, 30)


async def test_duplicates_and_reordering_have_one_effect_each(
    api_settings: ApiSettings, engine: AsyncEngine, producer: AIOKafkaProducer, unique: str
) -> None:
    topic = probe_class(unique).TOPIC
    v1, v2, v3 = (probe(unique, "k", version) for version in (1, 2, 3))
    # v2 arrives first, then v1 late, v2 twice more, then v3.
    for document in (v2, v1, v2, v3, v2):
        await send(producer, document, topic=topic, key="k")
    consumer = consumer_probe.build(api_settings, engine, unique)
    task = await consuming(consumer)
    try:
        await until(lambda: _has(engine, unique, ("k", 3)))
        await asyncio.sleep(1)  # a second effect of a duplicate would show by now
    finally:
        await stop(consumer, task)
    assert await effects(engine, unique) == [("k", 1), ("k", 2), ("k", 3)]
    assert await state(engine, unique) == {"k": 3}  # the late v1 did not regress it


async def _has(engine: AsyncEngine, unique: str, effect: tuple[str, int]) -> bool:
    return effect in await effects(engine, unique)


async def test_a_relay_that_dies_between_publish_and_commit_gives_one_effect(
    api_settings: ApiSettings,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = outbox.to_metadata(MetaData(), name=f"it_outbox_{unique}")
    table.indexes.clear()
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
    tracer = TracerProvider().get_tracer("test")
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with UnitOfWork(sessions, outbox=table, source="/tenx/test") as uow:
            for version in (1, 2):
                await uow.publish(probe_class(unique)(key="r", version=version))
            await uow.commit()

        sent = relay.Batches.sent

        async def die(batches: relay.Batches) -> NoReturn:
            await sent(batches)  # every row acknowledged by the broker
            raise RuntimeError("the relay died after publishing, before its commit")

        monkeypatch.setattr(relay.Batches, "sent", die)
        with pytest.raises(RuntimeError):
            await publish_a_batch(engine, table, producer, tracer)
        monkeypatch.undo()
        await publish_a_batch(
            engine, table, producer, tracer
        )  # the same rows again: every event is on the topic twice
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.drop)

    consumer = consumer_probe.build(api_settings, engine, unique)
    task = await consuming(consumer)
    try:
        await until(lambda: _has(engine, unique, ("r", 2)))
        await until(lambda: _lag_is_zero(consumer))
    finally:
        await stop(consumer, task)
    assert consumer._outcomes["duplicate"] == 2
    assert await effects(engine, unique) == [("r", 1), ("r", 2)]


async def _lag_is_zero(consumer: Consumer) -> bool:
    return bool(consumer._lag) and sum(consumer._lag.values()) == 0


async def test_a_consumer_killed_after_its_effect_and_before_its_commit_has_one_effect(
    api_settings: ApiSettings, engine: AsyncEngine, producer: AIOKafkaProducer, unique: str
) -> None:
    topic = probe_class(unique).TOPIC
    await send(producer, probe(unique, "c", 1), topic=topic, key="c")
    crashed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.consumer_probe",
        unique,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(crashed.communicate(), 120)
    assert crashed.returncode == 137, stderr.decode()[-2000:]
    assert await effects(engine, unique) == [("c", 1)]  # done, but its offset was not committed

    consumer = consumer_probe.build(api_settings, engine, unique)
    task = await consuming(consumer)
    try:
        await until(lambda: _lag_is_zero(consumer))
    finally:
        await stop(consumer, task)
    assert consumer._outcomes["duplicate"] == 1  # redelivered, absorbed by the inbox
    assert await effects(engine, unique) == [("c", 1)]


async def test_a_poison_event_is_parked_without_blocking_and_redriven_after_a_fix(
    api_settings: ApiSettings, engine: AsyncEngine, producer: AIOKafkaProducer, unique: str
) -> None:
    topic = probe_class(unique).TOPIC
    poison = probe(unique, "p", 1, poison=True)
    await send(producer, poison, topic=topic, key="p")
    await send(producer, probe(unique, "p", 2), topic=topic, key="p")  # same key, behind it
    await send(producer, b"not json", topic=topic, key="p")  # unreadable: parked at once
    consumer = consumer_probe.build(api_settings, engine, unique)
    name = consumer.name
    task = await consuming(consumer)
    try:
        await until(lambda: _has(engine, unique, ("p", 2)))  # the partition moved on
        await until(lambda: _parked(engine, name, 2))
        letters = {row["event_id"]: row for row in await list_dead_letters(engine, dead_letters)}
        parked = letters[poison["id"]]
        assert parked["attempts"] == 3
        assert "ValueError: cannot digest p" in parked["error"]
        unreadable = next(row for row in letters.values() if row["event_type"] is None)
        assert unreadable["attempts"] == 1
        assert "not a structured CloudEvent" in unreadable["error"]

        FIXED.add("p")  # the fix is deployed
        assert await request_redrive(engine, dead_letters, [uuid.UUID(parked["id"])]) == 1
        await until(lambda: _has(engine, unique, ("p", 1)))
        await until(lambda: _status(engine, parked["id"], REDRIVEN))
    finally:
        FIXED.discard("p")
        await stop(consumer, task)
    assert await effects(engine, unique) == [("p", 1), ("p", 2)]
    assert await state(engine, unique) == {"p": 2}
    # The dead-letter topic got both, with the error in a header.
    dlq = AIOKafkaConsumer(
        dead_letter_topic(name),
        bootstrap_servers=api_settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
    finally:
        await dlq.stop()
    records = [r for rs in batch.values() for r in rs]
    assert len(records) == 2
    assert all(dict(r.headers)["tenx-error"] for r in records)


async def _parked(engine: AsyncEngine, consumer: str, count: int) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(func.count()).where(
                dead_letters.c.consumer == consumer, dead_letters.c.status == PARKED
            )
        )
    return found == count


async def _status(engine: AsyncEngine, letter_id: str, status: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(dead_letters.c.status).where(dead_letters.c.id == uuid.UUID(letter_id))
        )
    return found == status


async def test_consumers_joining_and_leaving_mid_stream_lose_nothing_and_repeat_nothing(
    api_settings: ApiSettings, engine: AsyncEngine, producer: AIOKafkaProducer, unique: str
) -> None:
    topic = probe_class(unique).TOPIC
    keys = [f"k{i}" for i in range(12)]  # spread over the topic's partitions
    for version in range(1, 11):
        for key in keys:
            await send(producer, probe(unique, key, version), topic=topic, key=key)
    first = consumer_probe.build(api_settings, engine, unique, delay_s=0.05)
    first_task = await consuming(first)
    await until(lambda: _count(engine, unique, 10))
    second = consumer_probe.build(api_settings, engine, unique, delay_s=0.05)  # a rebalance
    second_task = await consuming(second)
    await until(lambda: _count(engine, unique, 40))
    await stop(first, first_task)  # graceful: finishes its batch, commits, leaves the group
    try:
        await until(lambda: _count(engine, unique, len(keys) * 10))
        await until(lambda: _lag_is_zero(second))
    finally:
        await stop(second, second_task)
    done = await effects(engine, unique)
    assert len(done) == len(set(done)) == len(keys) * 10  # every event, once
    assert first._outcomes["processed"] > 0
    assert second._outcomes["processed"] > 0  # both had partitions
    assert await state(engine, unique) == dict.fromkeys(keys, 10)


async def _count(engine: AsyncEngine, unique: str, at_least: int) -> bool:
    return len(await effects(engine, unique)) >= at_least


async def test_inbox_rows_past_their_retention_are_swept(
    api_settings: ApiSettings, engine: AsyncEngine, unique: str
) -> None:
    consumer = consumer_probe.build(api_settings, engine, unique)
    retention = timedelta(seconds=api_settings.inbox_retention_s)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(inbox),
            [
                {"consumer": consumer.name, "event_id": "old", "processed_at": now - retention * 2},
                {"consumer": consumer.name, "event_id": "new", "processed_at": now},
                {
                    "consumer": "someone-else",
                    "event_id": f"old-{unique}",
                    "processed_at": now - retention * 2,
                },
            ],
        )
    try:
        assert await consumer.sweep_inbox() == 1
        async with engine.connect() as conn:
            left = set(
                await conn.scalars(
                    select(inbox.c.event_id).where(
                        inbox.c.consumer.in_([consumer.name, "someone-else"]),
                        inbox.c.event_id.in_(["old", "new", f"old-{unique}"]),
                    )
                )
            )
        assert left == {"new", f"old-{unique}"}  # another consumer's rows are its own business
    finally:
        async with engine.begin() as conn:
            await conn.execute(delete(inbox).where(inbox.c.event_id == f"old-{unique}"))
