"""PostgreSQL: the replicas stream from the primary and refuse writes."""

import asyncio
import importlib
from collections.abc import AsyncIterator

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import Engines, create_engines, primary_engine
from tests.support.stack import postgres_members, postgres_replicas


@pytest.fixture
async def engines(api_settings: ApiSettings) -> AsyncIterator[Engines]:
    """The primary, and as replicas the nodes that are replicas now."""
    url = make_url(api_settings.replica_urls[0])
    replicas = [
        url.set(port=int(m["port"])).render_as_string(hide_password=False)
        for m in postgres_replicas()
    ]
    engines = create_engines(api_settings.model_copy(update={"replica_urls": replicas}))
    yield engines
    await engines.dispose()


async def _scalar(engine: AsyncEngine, sql: str, **params: object) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def test_row_written_on_primary_is_read_on_replica(engines: Engines, unique: str) -> None:
    [replica, _] = engines.replicas
    table = f"it_replication_{unique}"
    async with engines.primary.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id text PRIMARY KEY)"))
        await conn.execute(text(f"INSERT INTO {table} VALUES (:id)"), {"id": unique})
    try:
        seen = None
        for _ in range(100):
            try:
                seen = await _scalar(replica, f"SELECT id FROM {table}")
            except DBAPIError:  # the CREATE TABLE has not been replayed yet
                seen = None
            if seen == unique:
                break
            await asyncio.sleep(0.1)
        assert seen == unique
        assert await _scalar(replica, "SELECT pg_is_in_recovery()") is True
        assert await _scalar(engines.primary, "SELECT pg_is_in_recovery()") is False
    finally:
        async with engines.primary.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))


async def test_no_node_compiles_statements_with_jit(engines: Engines) -> None:
    """JIT on an OLTP stack: asyncpg's type introspection, on each new client
    connection, compiled for 0.7 s and left its backend 37 MB larger."""
    for engine in (engines.primary, *engines.replicas):
        assert await _scalar(engine, "SHOW jit") == "off"


async def test_replicas_refuse_writes(engines: Engines, unique: str) -> None:
    assert len(engines.replicas) == 2
    for replica in engines.replicas:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with replica.begin() as conn:
                await conn.execute(text(f"CREATE TABLE it_refused_{unique} (id int)"))


async def test_replicas_stream_through_their_slots(engines: Engines) -> None:
    # Patroni keeps a slot per member on the primary, named after it.
    async with engines.primary.connect() as conn:
        active = set(
            await conn.scalars(text("SELECT slot_name FROM pg_replication_slots WHERE active"))
        )
    assert {m["name"].replace("-", "_") for m in postgres_replicas()} <= active
    for replica in engines.replicas:
        assert await _scalar(replica, "SELECT pg_last_wal_receive_lsn() IS NOT NULL") is True


async def test_each_service_role_is_confined_to_its_database(
    api_settings: ApiSettings,
) -> None:
    # database-per-service: the api's role cannot even connect to auth's database.
    url = api_settings.primary_url().set(database="tenx_auth")
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError, match="permission denied"):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()


@pytest.mark.parametrize("package", ["tenx_api", "tenx_auth", "tenx_notify", "tenx_search_indexer"])
async def test_each_service_database_is_migrated_to_head(package: str) -> None:
    settings = importlib.import_module(f"{package}.settings").Settings()
    engine = primary_engine(settings)
    try:
        version = await _scalar(engine, "SELECT version_num FROM alembic_version")
        database = await _scalar(engine, "SELECT current_database()")
    finally:
        await engine.dispose()
    script = ScriptDirectory.from_config(_alembic_config(package))
    assert version == script.get_current_head()
    assert database == package


def _alembic_config(package: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    return config


async def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(
    api_settings: ApiSettings,
) -> None:
    """No ping per checkout (db.replace_closed_connections): a connection
    whose backend is gone (a restart, a terminated backend) is never handed
    out. Straight to the primary: behind PgBouncer the client's connection is
    PgBouncer's, which replaces a server connection that ended by itself."""
    leader = next(m for m in postgres_members() if m["role"] == "leader")
    direct = make_url(api_settings.replica_urls[0]).set(port=int(leader["port"]))
    settings = api_settings.model_copy(
        update={
            "database_url": direct.render_as_string(hide_password=False),
            "database_session_url": "",
            "database_statement_cache_size": 100,
            "replica_urls": [],
        }
    )
    engines = create_engines(settings)
    other = primary_engine(settings)
    try:
        first = await _scalar(engines.primary, "SELECT pg_backend_pid()")
        assert await _scalar(other, "SELECT pg_terminate_backend(:pid)", pid=first) is True
        await asyncio.sleep(0.2)  # the closed socket reaches the driver
        second = await _scalar(engines.primary, "SELECT pg_backend_pid()")
    finally:
        await other.dispose()
        await engines.dispose()
    assert second not in (None, first)
