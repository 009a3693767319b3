"""The event backbone, measured on the running stack's PostgreSQL and Kafka.

Each part has its own outbox table, topic and consumer group, so the stack's
relays and workers never see these events (and nothing of theirs is counted).

- Latency, outbox commit to consumer effect: a writer commits one event per
  transaction at 200 events/s for 15 s (each through the unit of work, which
  wakes the relay by NOTIFY); a relay process publishes them; a consumer
  process of the tenx_common framework applies each (inbox row and effect in
  one transaction). Latency is from the writer's commit to the effect's row
  (its clock_timestamp), p50 and p99 (target p99 at most 100 ms).
- Relay throughput: 30,000 events already in the outbox, each with a request's
  trace context, drained by relay processes in batches of 1,000: one relay
  with every trace sampled (the local default), one relay sampling 10 % (as
  deployed), and two relays sampling 10 %; events per second (target: the
  one relay sampling 10 % at least 0.4 of the bare idempotent producer below).
- The producer: aiokafka with acks=all and idempotence against acks=1
  without, 20,000 messages of 500 bytes each, three interleaved rounds, the
  median rate of each and their ratio.

Writes bench/results/event_pipeline.json. Run: make bench (the stack must be up).
"""

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import MetaData, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.sql.elements import quoted_name

from tenx_api.adapters.orm import dead_letters, inbox, outbox
from tenx_api.settings import Settings
from tenx_common.data.db import primary_engine
from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event, cloud_event
from tenx_common.messaging.consumer import Consumer
from tenx_common.messaging.relay import Relay
from tenx_common.messaging.topics import TopicSettings, ensure_topics

ROOT = Path(__file__).resolve().parents[1]
RATE = 200  # events per second
SECONDS = 15
BACKLOG = 30_000
PRODUCER_MESSAGES = 20_000
ROUNDS = 3
RELAY_BATCH = 1000


class Tick(Event):
    TOPIC: ClassVar[str] = "bench.ticks"  # replaced per run
    TYPE: ClassVar[str] = "tenx.bench.tick.v1"
    key: str
    n: int

    def aggregate_id(self) -> str:
        return self.key


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Pipeline:
    """A private outbox, topic and consumer group on the stack's servers."""

    def __init__(self, settings: Settings, engine: AsyncEngine, tag: str) -> None:
        self.settings = settings
        self.engine = engine
        self.tag = tag
        self.table = outbox.to_metadata(MetaData(), name=f"bench_outbox_{tag}")
        for index in self.table.indexes:  # the stack's own indexes, named apart from its
            index.name = quoted_name(f"{index.name}_{tag}", quote=None)
        self.event: type[Tick] = type("Tick", (Tick,), {"TOPIC": f"bench.ticks-{tag}"})
        self.effects = f"bench_effects_{tag}"
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def __aenter__(self) -> "Pipeline":
        async with self.engine.begin() as conn:
            await conn.run_sync(self.table.create)
            await conn.execute(
                text(
                    f"CREATE TABLE {self.effects} (n int PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
                )
            )
        await ensure_topics(TopicSettings(), names=(self.event.TOPIC, f"dlq.bench-{self.tag}"))
        return self

    async def __aexit__(self, *_: object) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.table.drop)
            await conn.execute(text(f"DROP TABLE {self.effects}"))
            await conn.execute(text("DELETE FROM inbox WHERE consumer = :c"), {"c": self.group})
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([self.event.TOPIC, f"dlq.bench-{self.tag}"])
        finally:
            await admin.close()

    @property
    def group(self) -> str:
        return f"bench-{self.tag}"

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, outbox=self.table, source="/tenx/bench")

    def relay(self) -> Relay:
        return Relay(self.settings, self.table)

    def consumer(self) -> Consumer:
        effect = text(f"INSERT INTO {self.effects} (n) VALUES (:n)")  # noqa: S608 (our table)

        async def apply(uow: UnitOfWork, event: Any) -> None:
            await uow.session.execute(effect, {"n": event.n})

        return Consumer(
            name=self.group,
            settings=self.settings,
            uow=lambda: UnitOfWork(self.sessions, outbox=outbox, source="/tenx/bench"),
            engine=self.engine,
            inbox=inbox,
            dead_letters=dead_letters,
            handlers={self.event: apply},
            tracer=TracerProvider().get_tracer("bench"),
        )


async def warm_up(pipe: Pipeline, write: Any) -> None:
    """Until the relay and the consumer (started, joined) apply events: one a second."""
    for attempt in range(60):
        await write(-1 - attempt)
        await asyncio.sleep(1)
        async with pipe.engine.connect() as conn:
            if await conn.scalar(text(f"SELECT count(*) FROM {pipe.effects}")):  # noqa: S608
                return
    raise RuntimeError("the relay and consumer did not start within a minute")


def spawn(*args: str, **env: str) -> subprocess.Popen[bytes]:
    """A relay or consumer of this benchmark in a process of its own, as deployed."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.event_pipeline", *args],
        cwd=ROOT,
        env=os.environ | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(30)


async def latency(settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    async with Pipeline(settings, engine, uuid.uuid4().hex[:8]) as pipe:
        committed: dict[int, float] = {}
        workers = [spawn("relay", pipe.tag), spawn("consumer", pipe.tag)]

        async def write(n: int) -> None:
            async with pipe.uow() as uow:
                await uow.publish(pipe.event(key=f"k{n % 64}", n=n))
                await uow.commit()
            committed[n] = time.time()

        try:
            await warm_up(pipe, write)
            total = RATE * SECONDS
            start = time.perf_counter()
            writes = []
            for n in range(total):  # open loop: a slow commit does not delay the next
                await asyncio.sleep(max(0.0, start + n / RATE - time.perf_counter()))
                writes.append(asyncio.create_task(write(n)))
            await asyncio.gather(*writes)
            sent_rate = total / (time.perf_counter() - start)
            applied: dict[int, float] = {}
            for _ in range(600):  # at most a minute for the last ones
                async with engine.connect() as conn:
                    rows = await conn.execute(
                        text(f"SELECT n, extract(epoch FROM applied_at) FROM {pipe.effects}")  # noqa: S608
                    )
                    applied = {row[0]: float(row[1]) for row in rows}
                if len([n for n in applied if n >= 0]) >= total:
                    break
                await asyncio.sleep(0.1)
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(
                        pipe.table.c.payload["data"]["n"].as_integer(),
                        func.extract("epoch", pipe.table.c.published_at),
                    )
                )
                claimed = {row[0]: float(row[1]) for row in rows}
        finally:
            stop(*workers)
    done = [n for n in committed if n in applied and n in claimed and n >= 0]
    lat = [(applied[n] - committed[n]) * 1000 for n in done]
    # Where the time goes: commit to the relay's claim of the batch, then to the effect.
    pickup = [(claimed[n] - committed[n]) * 1000 for n in done]
    onward = [(applied[n] - claimed[n]) * 1000 for n in done]
    return {
        "events": total,
        "rate_per_s": round(sent_rate, 1),
        "applied": len([n for n in applied if n >= 0]),
        "p50_ms": round(percentile(lat, 0.50), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "max_ms": round(max(lat), 1),
        "commit_to_relay_claim_p50_ms": round(percentile(pickup, 0.50), 1),
        "commit_to_relay_claim_p99_ms": round(percentile(pickup, 0.99), 1),
        "relay_claim_to_effect_p50_ms": round(percentile(onward, 0.50), 1),
        "relay_claim_to_effect_p99_ms": round(percentile(onward, 0.99), 1),
        "target_p99_ms": 100,
    }


async def drain(
    settings: Settings, engine: AsyncEngine, *, relays: int, sample_ratio: str
) -> dict[str, Any]:
    """Seconds for ``relays`` relay processes to publish a backlog of BACKLOG events."""
    async with Pipeline(settings, engine, uuid.uuid4().hex[:8]) as pipe:
        rows = []
        for n in range(BACKLOG):
            document = cloud_event(pipe.event(key=f"k{n % 256}", n=n), source="/tenx/bench")
            trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
            # The request that wrote the row was sampled at the relay's ratio.
            flags = "01" if random.random() < float(sample_ratio) else "00"
            rows.append(
                {
                    "id": uuid.UUID(document["id"]),
                    "topic": pipe.event.TOPIC,
                    "key": f"k{n % 256}",
                    "type": pipe.event.TYPE,
                    "payload": document,
                    "headers": {"traceparent": f"00-{trace_id}-{span_id}-{flags}"},
                    "occurred_at": datetime.fromisoformat(document["time"]),
                }
            )
        async with engine.begin() as conn:
            for chunk in range(0, BACKLOG, 5000):
                await conn.execute(insert(pipe.table), rows[chunk : chunk + 5000])
        workers = [
            spawn("relay", pipe.tag, TENX_API_TRACE_SAMPLE_RATIO=sample_ratio)
            for _ in range(relays)
        ]
        try:
            for _ in range(3000):
                async with engine.connect() as conn:
                    left = await conn.scalar(
                        text(f"SELECT count(*) FROM {pipe.table.name} WHERE published_at IS NULL")  # noqa: S608
                    )
                if not left:
                    break
                await asyncio.sleep(0.05)
            # From the first batch's start to the last's: the processes' start is not counted.
            async with engine.connect() as conn:
                first, last = (
                    await conn.execute(
                        select(
                            func.extract("epoch", func.min(pipe.table.c.published_at)),
                            func.extract("epoch", func.max(pipe.table.c.published_at)),
                        )
                    )
                ).one()
            seconds = float(last - first)
        finally:
            stop(*workers)
    return {
        "relays": relays,
        "trace_sample_ratio": float(sample_ratio),
        "seconds": round(seconds, 2),
        "events_per_s": round((BACKLOG - RELAY_BATCH) / seconds),
    }


async def relay_throughput(settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    runs = [
        await drain(settings, engine, relays=1, sample_ratio="1.0"),
        await drain(settings, engine, relays=1, sample_ratio="0.1"),
        await drain(settings, engine, relays=2, sample_ratio="0.1"),
    ]
    return {
        "events": BACKLOG,
        "batch_size": RELAY_BATCH,
        "note": "first batch's start to the last's (published_at): all batches but the last",
        "runs": runs,
        "target_ratio_to_the_idempotent_producer": 0.4,
    }


async def producer_rate(settings: Settings, topic: str, **config: Any) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5, **config
    )
    await producer.start()
    value = b"x" * 500
    try:
        start = time.perf_counter()
        sent = [
            await producer.send(topic, key=str(n % 64).encode(), value=value)
            for n in range(PRODUCER_MESSAGES)
        ]
        await asyncio.gather(*sent)
        return PRODUCER_MESSAGES / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def producer_modes(settings: Settings) -> dict[str, Any]:
    topic = f"bench.producer-{uuid.uuid4().hex[:8]}"
    await ensure_topics(TopicSettings(), names=(topic,))
    safe: list[float] = []
    fast: list[float] = []
    try:
        for _ in range(ROUNDS):
            safe.append(await producer_rate(settings, topic, acks="all", enable_idempotence=True))
            fast.append(await producer_rate(settings, topic, acks=1, enable_idempotence=False))
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return {
        "messages": PRODUCER_MESSAGES,
        "acks_all_idempotent_per_s": round(statistics.median(safe)),
        "acks_1_per_s": round(statistics.median(fast)),
        "ratio": round(statistics.median(safe) / statistics.median(fast), 2),
    }


async def run(only: str | None = None) -> dict[str, Any]:
    settings = Settings()
    engine = primary_engine(settings, pool_size=10)
    parts: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "outbox_to_effect_latency": lambda: latency(settings, engine),
        "relay_throughput": lambda: relay_throughput(settings, engine),
        "producer_acks_all_idempotent_vs_acks_1": lambda: producer_modes(settings),
    }
    try:
        return {name: await part() for name, part in parts.items() if only in (None, name)}
    finally:
        await engine.dispose()


def serve(role: str, tag: str) -> None:
    """The relay or the consumer of pipeline ``tag``, until SIGTERM."""
    settings = Settings().model_copy(update={"outbox_batch_size": RELAY_BATCH})

    async def run() -> None:
        engine = primary_engine(settings, pool_size=4)
        pipe = Pipeline(settings, engine, tag)
        loop = pipe.relay() if role == "relay" else pipe.consumer()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, loop.stopping.set)
        await loop.run()
        await engine.dispose()

    asyncio.run(run())


def main() -> None:
    if len(sys.argv) == 3:
        serve(sys.argv[1], sys.argv[2])
        return
    results = asyncio.run(run(sys.argv[1] if len(sys.argv) == 2 else None))
    if len(results) < 3:  # one part, to look into it: printed, not recorded
        print(json.dumps(results, indent=2))
        return
    out = ROOT / "bench" / "results" / "event_pipeline.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
