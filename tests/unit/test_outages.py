"""Which dependency an exception says is down (tenx_common.web.outages), on what
each client really raises against a closed port or a server that hangs up, on
the libraries' own exception objects, and through causes and groups."""

import asyncio
from collections.abc import Awaitable

import asyncpg.exceptions as pg
import pytest
import redis.exceptions
import sqlalchemy.exc
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from elastic_transport import ConnectionError as EsConnectionError
from sqlalchemy import text

from tenx_common.data.cache import create_redis
from tenx_common.data.db import create_engines
from tenx_common.data.elasticsearch import create_elasticsearch
from tenx_common.settings import ElasticsearchSettings, PostgresSettings, RedisSettings
from tenx_common.web.outages import Dependency, find_outage
from tests.unit.conftest import CLOSED


def dependency_of(exc: BaseException) -> Dependency | None:
    outage = find_outage(exc)
    return None if outage is None else outage.dependency


async def failure_of(call: Awaitable[object]) -> Exception:
    try:
        await call
    except Exception as exc:
        return exc
    raise AssertionError("the call did not fail")


async def select_one(url: str) -> None:
    engines = create_engines(PostgresSettings(database_url=url))
    try:
        async with engines.primary.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engines.dispose()


async def test_a_refused_database_connect_is_a_bare_os_error_and_postgres() -> None:
    error = await failure_of(select_one(f"postgresql+asyncpg://x@{CLOSED}/x"))
    assert type(error) is ConnectionRefusedError  # SQLAlchemy passes asyncpg's on unwrapped
    assert dependency_of(error) == "postgres"


async def test_a_database_that_hangs_up_is_postgres(hangs_up: str) -> None:
    error = await failure_of(select_one(f"postgresql+asyncpg://x@{hangs_up}/x?ssl=disable"))
    assert isinstance(error, sqlalchemy.exc.DBAPIError)
    assert isinstance(error.orig, Exception)
    assert isinstance(error.orig.__cause__, pg.ConnectionDoesNotExistError)
    assert dependency_of(error) == "postgres"


@pytest.mark.parametrize(
    "error",
    [
        pg.CannotConnectNowError("the database system is shutting down"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.TooManyConnectionsError("sorry, too many clients already"),
        # A write that reached the old primary, back as a replica, mid-failover.
        sqlalchemy.exc.DBAPIError(
            "UPDATE products", {}, pg.ReadOnlySQLTransactionError("read-only transaction")
        ),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"),
        sqlalchemy.exc.InterfaceError(
            "SELECT 1", {}, pg.InterfaceError("connection is closed"), connection_invalidated=True
        ),
        # The driver's error only as ``orig`` (a DBAPIError made, not raised).
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, pg.ConnectionFailureError("lost")),
    ],
)
def test_the_database_libraries_own_outage_errors_are_postgres(error: Exception) -> None:
    assert dependency_of(error) == "postgres"


async def test_a_refused_socket_elsewhere_is_not_the_database() -> None:
    error = await failure_of(asyncio.open_connection("127.0.0.1", 1))
    assert isinstance(error, ConnectionRefusedError)
    assert dependency_of(error) is None
    assert dependency_of(TimeoutError()) is None


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        KeyError("price"),
        sqlalchemy.exc.IntegrityError(
            "INSERT", {}, pg.UniqueViolationError("duplicate key value violates unique constraint")
        ),
        sqlalchemy.exc.ProgrammingError("SELECT nope", {}, pg.UndefinedColumnError("no column")),
        redis.exceptions.ResponseError("WRONGTYPE"),
    ],
)
def test_anything_else_is_no_outage(error: Exception) -> None:
    assert find_outage(error) is None


async def test_redis_refused_is_redis() -> None:
    client = create_redis(RedisSettings(redis_url=f"redis://{CLOSED}/0"))
    try:
        error = await failure_of(client.ping())
    finally:
        await client.aclose()
    assert isinstance(error, redis.exceptions.ConnectionError)
    assert dependency_of(error) == "redis"
    assert dependency_of(redis.exceptions.TimeoutError("Timeout reading")) == "redis"


async def test_kafka_refused_is_kafka() -> None:
    client = AIOKafkaClient(bootstrap_servers=CLOSED, request_timeout_ms=500)
    try:
        error = await failure_of(client.bootstrap())
    finally:
        await client.close()
    assert isinstance(error, KafkaConnectionError)
    assert dependency_of(error) == "kafka"
    assert dependency_of(KafkaTimeoutError()) == "kafka"


async def test_elasticsearch_refused_is_elasticsearch() -> None:
    client = create_elasticsearch(ElasticsearchSettings(elasticsearch_url=f"http://{CLOSED}"))
    try:
        error = await failure_of(client.search(index="products"))
    finally:
        await client.close()
    assert isinstance(error, EsConnectionError)
    assert dependency_of(error) == "elasticsearch"


async def test_an_outage_is_found_under_what_was_raised_from_it() -> None:
    refused = await failure_of(select_one(f"postgresql+asyncpg://x@{CLOSED}/x"))
    with pytest.raises(RuntimeError) as wrapped:
        raise RuntimeError("placing the order failed") from refused
    assert dependency_of(wrapped.value) == "postgres"


def look_up_while_redis_is_down(*, said_unrelated: bool) -> None:
    try:
        raise redis.exceptions.ConnectionError("Connection refused")
    except redis.exceptions.ConnectionError:
        if said_unrelated:
            raise KeyError("unrelated") from None
        raise KeyError("while handling it")  # noqa: B904 (the context is the point)


def test_an_outage_is_found_under_what_was_raised_while_handling_it() -> None:
    with pytest.raises(KeyError) as during:
        look_up_while_redis_is_down(said_unrelated=False)
    assert dependency_of(during.value) == "redis"
    with pytest.raises(KeyError) as suppressed:
        look_up_while_redis_is_down(said_unrelated=True)
    assert find_outage(suppressed.value) is None


async def a_bug_beside_an_outage() -> None:
    async def broken() -> None:
        raise ValueError("a bug beside it")

    async def down() -> None:
        raise redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:6379")

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(broken())
        tasks.create_task(down())


async def test_an_outage_is_found_in_a_task_groups_errors() -> None:
    group = await failure_of(a_bug_beside_an_outage())
    assert isinstance(group, ExceptionGroup)
    outage = find_outage(group)
    assert outage is not None
    assert outage.dependency == "redis"
    assert outage.summary() == "TimeoutError: Timeout reading from 127.0.0.1:6379"
