"""The session router on the real primary and one of its streaming replicas.

Replay on the replica is paused (as the postgres superuser, over the replica's
Unix socket) to make it lag for as long as a test needs.
"""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.cache import create_redis
from tenx_common.data.db import Engines, create_engines
from tenx_common.data.session_router import RedisWritePositions, SessionRouter
from tests.support.stack import node_sql, patroni_maintenance, postgres_replicas


def replica_port() -> int:
    """The node these tests lag: a replica that is not the synchronous
    standby, so commits on the primary do not wait for it."""
    replicas = sorted(postgres_replicas(), key=lambda m: m["role"] == "sync_standby")
    return int(replicas[0]["port"])


def replica_sql(sql: str) -> str:
    return node_sql(replica_port(), sql)


@pytest.fixture(autouse=True)
def maintenance() -> Iterator[None]:
    """Patroni would resume the paused replay (and must not fail over meanwhile)."""
    with patroni_maintenance():
        yield


@pytest.fixture
async def router(api_settings: ApiSettings) -> AsyncIterator[SessionRouter]:
    # One replica in rotation, the one replica_sql lags.
    replica = api_settings.replica_url_list()[0].set(port=replica_port())
    engines = create_engines(
        api_settings.model_copy(update={"replica_urls": [replica.render_as_string(False)]})
    )
    redis = create_redis(api_settings)
    router = SessionRouter(
        engines=engines, positions=RedisWritePositions(redis, ttl_s=60), check_interval_s=0.2
    )
    await router.start()
    yield router
    await router.stop()
    await redis.aclose()
    await engines.dispose()


@pytest.fixture
async def table(router: SessionRouter) -> AsyncIterator[str]:
    name = f"it_router_{uuid.uuid4().hex[:10]}"
    async with router.writer() as session:
        await session.execute(text(f"CREATE TABLE {name} (id text PRIMARY KEY, client text)"))
        await session.commit()
    await router.record_write("setup")
    yield name
    replica_sql("SELECT pg_wal_replay_resume()")
    async with router.writer() as session:
        await session.execute(text(f"DROP TABLE {name}"))
        await session.commit()


@pytest.fixture
def paused_replica() -> Iterator[None]:
    replica_sql("SELECT pg_wal_replay_pause()")
    yield
    replica_sql("SELECT pg_wal_replay_resume()")


async def _wait_replayed(router: SessionRouter, client: str) -> None:
    session = await router.reader(client)
    await session.close()


async def test_a_client_reads_its_own_writes_while_the_replica_lags(
    router: SessionRouter, table: str
) -> None:
    async with await router.reader("setup") as session:  # the table reached the replica
        await session.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))
    # The paused replica stays in rotation however much WAL the rest of the
    # stack writes meanwhile (a checkpoint's full-page images once took it
    # past the 16 MB bound): this test is about who reads where, the next
    # one about the bound.
    router.max_lag_bytes = 1 << 40
    replica_sql("SELECT pg_wal_replay_pause()")
    stale, targets = 0, {"primary": 0, "replica": 0}
    for i in range(1000):
        client = f"client-{i % 20}"
        row_id = f"row-{i}"
        async with router.writer() as session:
            await session.execute(
                text(f"INSERT INTO {table} VALUES (:id, :client)"),
                {"id": row_id, "client": client},
            )
            await session.commit()
        await router.record_write(client)
        session = await router.reader(client)
        async with session:
            found = (
                await session.execute(
                    text(f"SELECT id FROM {table} WHERE id = :id"),
                    {"id": row_id},
                )
            ).scalar_one_or_none()
            targets["primary" if session.info["target"] == "primary" else "replica"] += 1
        stale += found != row_id
        if i % 100 == 0:  # a client that never wrote still reads from the replica
            bystander = await router.reader(f"bystander-{i}")
            async with bystander:
                assert bystander.info["target"] == "replica-1"
    replica_sql("SELECT pg_wal_replay_resume()")
    assert stale == 0
    assert targets["primary"] == 1000  # the paused replica could not serve them


async def test_a_lagging_replica_leaves_and_rejoins_the_rotation(
    router: SessionRouter, table: str, paused_replica: None
) -> None:
    router.max_lag_bytes = 1024
    async with router.writer() as session:
        for i in range(50):
            await session.execute(
                text(f"INSERT INTO {table} VALUES (:id, 'filler')"),
                {"id": f"filler-{i}-" + "x" * 200},
            )
        await session.commit()
    await router.check_replicas()
    assert router.replicas[0].healthy is False
    assert router.replicas[0].lag_bytes is not None
    assert router.replicas[0].lag_bytes > 1024
    async with await router.reader() as session:
        assert session.info["target"] == "primary"

    replica_sql("SELECT pg_wal_replay_resume()")
    for _ in range(50):
        await router.check_replicas()
        if router.replicas[0].healthy:
            break
    assert router.replicas[0].healthy is True
    async with await router.reader() as session:
        assert session.info["target"] == "replica-1"


async def test_a_dead_replica_sends_every_read_to_the_primary(api_settings: ApiSettings) -> None:
    engines = create_engines(api_settings)
    dead = create_engines(
        api_settings.model_copy(
            update={"replica_urls": ["postgresql+asyncpg://tenx_api@127.0.0.1:1/tenx_api"]}
        )
    )
    redis = create_redis(api_settings)
    router = SessionRouter(
        engines=Engines(primary=engines.primary, replicas=dead.replicas),
        positions=RedisWritePositions(redis),
    )
    await router.start()
    try:
        assert router.replicas[0].healthy is False
        for _ in range(20):
            session: AsyncSession = await router.reader()
            async with session:
                assert session.info["target"] == "primary"
                assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await router.stop()
        await redis.aclose()
        await engines.dispose()
        await dead.dispose()


async def test_a_mark_gives_way_only_to_the_position_read_for_it(
    api_settings: ApiSettings,
) -> None:
    redis = create_redis(api_settings)
    positions = RedisWritePositions(redis, ttl_s=60, prefix=f"it:ryw:{uuid.uuid4().hex}")
    try:
        await positions.mark("alice", "bob")
        first = await positions.get("alice")
        assert isinstance(first, str)
        assert first == await positions.get("bob")
        await positions.settle("alice", first, 1234)
        assert await positions.get("alice") == 1234

        await positions.mark("bob")  # a newer write, while bob's first mark was read
        newer = await positions.get("bob")
        assert isinstance(newer, str)
        assert newer != first
        await positions.settle("bob", first, 99)  # the position read for the older mark
        assert await positions.get("bob") == newer  # does not cover the newer write
        assert 0 < await redis.ttl(f"{positions._prefix}:alice") <= 60  # the mark's lifetime
    finally:
        await redis.aclose()
