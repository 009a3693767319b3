"""A consumer of probe events on a topic of their own, for the consumer tests.

Its effect keeps the highest version per key (so reordered events do not
regress it) and logs one row per effect, which the tests count.
``python -m tests.support.consumer_probe UNIQUE`` runs it in a process that
dies (exit 137, like SIGKILL) right after its first effect commits and before
the offset is committed.
"""

import asyncio
import os
import sys
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from tenx_api.adapters.orm import dead_letters, inbox, outbox
from tenx_api.settings import Settings
from tenx_common.data.db import primary_engine
from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event
from tenx_common.messaging.consumer import Consumer

FIXED: set[str] = set()  # keys whose poison the "fix" has made harmless


class Probe(Event):
    TOPIC: ClassVar[str] = "test.probes"  # replaced per test run by probe_class
    TYPE: ClassVar[str] = "tenx.test.probe.v1"
    key: str
    version: int
    poison: bool = False

    def aggregate_id(self) -> str:
        return self.key


def probe_class(unique: str) -> type[Probe]:
    return type("Probe", (Probe,), {"TOPIC": f"test.probes-{unique}", "__module__": __name__})


def tables(unique: str) -> tuple[str, str]:
    return f"it_state_{unique}", f"it_effects_{unique}"


async def create_tables(engine: AsyncEngine, unique: str) -> None:
    state, effects = tables(unique)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {state} (key text PRIMARY KEY, version int)"))
        await conn.execute(text(f"CREATE TABLE {effects} (event_key text, version int)"))


async def drop_tables(engine: AsyncEngine, unique: str) -> None:
    async with engine.begin() as conn:
        for table in tables(unique):
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))


def build(settings: Settings, engine: AsyncEngine, unique: str, *, delay_s: float = 0) -> Consumer:
    state, effects = tables(unique)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def apply(uow: UnitOfWork, event: Any) -> None:
        if event.poison and event.key not in FIXED:
            raise ValueError(f"cannot digest {event.key}")
        await asyncio.sleep(delay_s)  # a slow effect, so that a rebalance lands mid-stream
        await uow.session.execute(
            text(
                f"INSERT INTO {state} VALUES (:k, :v) ON CONFLICT (key) DO UPDATE"
                f" SET version = excluded.version WHERE {state}.version < excluded.version"
            ),
            {"k": event.key, "v": event.version},
        )
        await uow.session.execute(
            text(f"INSERT INTO {effects} VALUES (:k, :v)"), {"k": event.key, "v": event.version}
        )

    return Consumer(
        name=f"it-{unique}",
        settings=settings.model_copy(
            # Small polls, so that a rebalance finds records not yet fetched.
            update={
                "consumer_max_attempts": 3,
                "consumer_backoff_s": 0.05,
                "consumer_batch_size": 10,
            }
        ),
        uow=lambda: UnitOfWork(sessions, outbox=outbox, source="/tenx/test"),
        engine=engine,
        inbox=inbox,
        dead_letters=dead_letters,
        handlers={probe_class(unique): apply},
        tracer=TracerProvider().get_tracer("test"),
    )


def main() -> None:
    unique = sys.argv[1]

    async def die(*_: object, **__: object) -> None:
        os._exit(137)  # the effect is committed; the offset never will be

    AIOKafkaConsumer.commit = die

    async def run() -> None:
        settings = Settings()
        engine = primary_engine(settings)
        await build(settings, engine, unique).run()

    asyncio.run(run())


if __name__ == "__main__":
    main()
