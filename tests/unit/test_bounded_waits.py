"""A client gives up on a dependency that hangs at the deadline its settings
give (against a port that accepts and never answers), and the outage is named."""

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from elastic_transport import ConnectionTimeout
from sqlalchemy import text

from tenx_common.data.cache import create_redis
from tenx_common.data.db import Engines, bounded_waits, create_engines
from tenx_common.data.elasticsearch import create_elasticsearch
from tenx_common.settings import ElasticsearchSettings, PostgresSettings, RedisSettings
from tenx_common.web.outages import Dependency, find_outage
from tests.unit.conftest import CLOSED

DEADLINE_S = 0.2


async def timed_failure(call: Awaitable[object]) -> tuple[BaseException, float]:
    """The call's error and how long it took; a call that outlives its
    deadline by far fails the test instead of hanging it."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(3):
            await call
    except TimeoutError as exc:
        if time.perf_counter() - started >= 3:
            raise AssertionError("no deadline: the call waited on") from exc
        return exc, time.perf_counter() - started
    except Exception as exc:
        return exc, time.perf_counter() - started
    raise AssertionError("the call did not fail")


def dependency_of(exc: BaseException) -> Dependency | None:
    outage = find_outage(exc)
    return None if outage is None else outage.dependency


async def select_one(engines: Engines) -> None:
    async with engines.primary.connect() as conn:
        await conn.execute(text("SELECT 1"))


def database(address: str, **waits: Any) -> Engines:
    return create_engines(
        PostgresSettings(database_url=f"postgresql+asyncpg://x@{address}/x", **waits)
    )


def test_the_waits_default_to_a_few_seconds_and_the_pool_to_sqlalchemys() -> None:
    postgres, redis_ = PostgresSettings(), RedisSettings()
    assert (postgres.database_connect_timeout_s, postgres.database_pool_timeout_s) == (3.0, 30.0)
    assert (redis_.redis_connect_timeout_s, redis_.redis_socket_timeout_s) == (2.0, 2.0)
    assert redis_.redis_pool_timeout_s == 5.0
    assert ElasticsearchSettings().elasticsearch_request_timeout_s == 5.0
    engines = create_engines(PostgresSettings(database_pool_timeout_s=1.5))
    pool: Any = engines.primary.pool  # a QueuePool
    assert pool.timeout() == 1.5


async def test_a_database_connect_gives_up_at_its_timeout(silent: str) -> None:
    engines = database(silent, database_connect_timeout_s=DEADLINE_S)
    try:
        error, seconds = await timed_failure(select_one(engines))
    finally:
        await engines.dispose()
    assert type(error) is TimeoutError  # asyncpg's, passed on by SQLAlchemy
    assert seconds < 1.0
    assert dependency_of(error) == "postgres"


async def test_a_checkout_from_a_full_pool_gives_up_at_the_pool_timeout(silent: str) -> None:
    # Every connection of the pool (5 + 5 overflow) is stuck connecting: the
    # eleventh request waits for one only the pool timeout.
    engines = database(silent, database_connect_timeout_s=0.5, database_pool_timeout_s=0.1)
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(select_one(engines) for _ in range(11)), return_exceptions=True
        )
        seconds = time.perf_counter() - started
    finally:
        await engines.dispose()
    [full] = [r for r in results if isinstance(r, sqlalchemy.exc.TimeoutError)]
    assert dependency_of(full) == "postgres"
    assert all(isinstance(r, TimeoutError) for r in results if r is not full)
    assert seconds < 1.5


async def test_redis_gives_up_at_its_socket_timeout_once(silent: str) -> None:
    client = create_redis(
        RedisSettings(redis_url=f"redis://{silent}/0", redis_socket_timeout_s=DEADLINE_S)
    )
    try:
        error, seconds = await timed_failure(client.get("key"))
    finally:
        await client.aclose()
    assert isinstance(error, redis.exceptions.TimeoutError)
    assert seconds < 1.0  # not retried: one timeout, not nine
    assert dependency_of(error) == "redis"


def test_redis_gets_every_wait_from_its_settings() -> None:
    client = create_redis(
        RedisSettings(
            redis_connect_timeout_s=0.3, redis_socket_timeout_s=0.4, redis_pool_timeout_s=0.5
        )
    )
    pool: Any = client.connection_pool
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.3
    assert pool.connection_kwargs["socket_timeout"] == 0.4
    assert pool.timeout == 0.5


async def test_elasticsearch_gives_up_at_its_request_timeout(silent: str) -> None:
    client = create_elasticsearch(
        ElasticsearchSettings(
            elasticsearch_url=f"http://{silent}", elasticsearch_request_timeout_s=DEADLINE_S
        )
    )
    try:
        error, seconds = await timed_failure(client.search(index="products"))
    finally:
        await client.close()
    assert isinstance(error, ConnectionTimeout)
    assert seconds < 1.0  # a timeout is not retried
    assert dependency_of(error) == "elasticsearch"


async def test_a_refused_dependency_answers_at_once() -> None:
    engines = database(CLOSED)
    try:
        error, seconds = await timed_failure(select_one(engines))
    finally:
        await engines.dispose()
    assert dependency_of(error) == "postgres"
    assert seconds < 1.0


def test_behind_a_transaction_pooler_statements_are_unnamed_and_described_once() -> None:
    settings = PostgresSettings(
        database_statement_cache_size=0,
        database_session_url="postgresql+asyncpg://x@127.0.0.1:6432/x_session",
    )
    pooled = bounded_waits(settings)["connect_args"]
    assert pooled["statement_cache_size"] == 0
    # SQLAlchemy's cache of what a statement's Describe told stays on (its default).
    assert "prepared_statement_cache_size" not in pooled
    # No name function: asyncpg prepares unnamed when its cache is off.
    assert "prepared_statement_name_func" not in pooled
    # The encoding spelled as the server reports it: PgBouncer sets nothing.
    assert pooled["server_settings"] == {"client_encoding": "UTF8"}
    # LISTEN's connections keep their session: caches as usual, on the session entry.
    assert "statement_cache_size" not in bounded_waits(settings, pooled=False)["connect_args"]
    engines = create_engines(settings)
    assert engines.for_listening is engines.listener
    assert engines.for_listening.url.database == "x_session"
    # Straight to PostgreSQL (no pooler configured): the caches stay on.
    direct = create_engines(PostgresSettings())
    assert "statement_cache_size" not in bounded_waits(PostgresSettings())["connect_args"]
    assert direct.for_listening is direct.primary
