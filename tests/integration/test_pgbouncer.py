"""PgBouncer between the services and the primary (docs/data-tier.md): many
client connections share a few server connections (transaction mode), the
session entry keeps LISTEN working, and the pooler follows the primary when
Patroni hands the role to another node."""

import asyncio
import time
from typing import Any

import asyncpg
from sqlalchemy import URL, text

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tests.support.stack import STATE, patroni, postgres_members

POOL_SIZE = 20  # PGBOUNCER_POOL_SIZE in deploy/local/postgres.sh


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def test_many_clients_share_the_pool_of_server_connections(api_settings: ApiSettings) -> None:
    clients = [
        await asyncpg.connect(_dsn(api_settings.primary_url()), statement_cache_size=0)
        for _ in range(2 * POOL_SIZE)
    ]
    try:
        # Each client in a transaction that waits a moment: they overlap.
        async def server_pid(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                pid: int = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.execute("SELECT pg_sleep(0.3)")
                return pid

        pids = await asyncio.gather(*(server_pid(conn) for conn in clients))
    finally:
        await asyncio.gather(*(conn.close() for conn in clients))
    assert len(pids) == 2 * POOL_SIZE
    assert len(set(pids)) <= POOL_SIZE


async def test_a_service_engine_describes_a_statement_once_and_runs_it_anywhere(
    api_settings: ApiSettings,
) -> None:
    # asyncpg's cache off, statements unnamed: nothing of a client's is left
    # on the server connections it used (no reset runs between transactions).
    # SQLAlchemy keeps each statement's description per client connection,
    # so after the first execution a statement goes out parsed again with
    # its Bind in one round trip, on whichever server connection it meets:
    # four clients take turns, each mixing two statements, in and out of
    # transactions.
    engines = [primary_engine(api_settings, pool_size=1, max_overflow=0) for _ in range(4)]
    add = text("SELECT CAST(:n AS int) + 1")
    name = text("SELECT CAST(:n AS text) || '-' || current_database()")
    described: dict[int, set[int]] = {i: set() for i in range(len(engines))}
    try:
        for n in range(30):
            for i, engine in enumerate(engines):
                async with engine.begin() as conn:
                    assert await conn.scalar(add, {"n": n}) == n + 1
                    assert await conn.scalar(name, {"n": str(n)}) == f"{n}-tenx_api"
                    left = await conn.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
                    assert left == 0
                    adapted: Any = (await conn.get_raw_connection()).dbapi_connection
                    [held] = [
                        prepared
                        for query, (prepared, _, _) in adapted._prepared_statement_cache.items()
                        if query.endswith("AS int) + 1")
                    ]
                    described[i].add(id(held))
                    assert held._state.name == ""  # unnamed,
                    assert not held._state.prepared  # so parsed with every Bind
                async with engine.connect() as conn:  # no transaction
                    assert await conn.scalar(add, {"n": -n}) == 1 - n
    finally:
        for engine in engines:
            await engine.dispose()
    # One description per client connection, kept through all 30 turns.
    assert all(len(ids) == 1 for ids in described.values())


async def test_a_transaction_through_the_pooler_costs_no_set_statement(
    api_settings: ApiSettings,
) -> None:
    # PgBouncer sends SET before a transaction whose client wants a parameter
    # the server connection holds otherwise (asyncpg's 'utf-8' against UTF8).
    counted = await asyncpg.connect(_dsn(api_settings.session_url()))
    calls = (
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE query LIKE 'SET client_encoding%' AND dbid ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    engines = [primary_engine(api_settings, pool_size=1) for _ in range(4)]
    try:
        before = await counted.fetchval(calls)
        for n in range(10):
            for engine in engines:  # clients take turns on the server connections
                async with engine.begin() as conn:
                    assert await conn.scalar(text("SELECT CAST(:n AS int)"), {"n": n}) == n
        after = await counted.fetchval(calls)
    finally:
        await counted.close()
        for engine in engines:
            await engine.dispose()
    # Other clients of the stack may meet a server connection one of these used.
    assert after - before < 10


async def test_listen_works_through_the_session_entry(api_settings: ApiSettings) -> None:
    listener = await asyncpg.connect(_dsn(api_settings.session_url()))
    sender = await asyncpg.connect(_dsn(api_settings.primary_url()), statement_cache_size=0)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener("pgbouncer_test", lambda *args: heard.put_nowait(args[3]))
        await sender.execute("SELECT pg_notify('pgbouncer_test', 'ping')")
        assert await asyncio.wait_for(heard.get(), timeout=10) == "ping"
    finally:
        await listener.close()
        await sender.close()


def _routed_port() -> int:
    """The primary's port that PgBouncer's database entries name now."""
    entries = (STATE / "pgbouncer" / "databases.ini").read_text()
    line = next(line for line in entries.splitlines() if line.startswith("; The primary: "))
    return int(line.split("127.0.0.1:")[1].split()[0])


async def _served_port(api_settings: ApiSettings) -> int | None:
    try:
        conn = await asyncpg.connect(
            _dsn(api_settings.primary_url()), statement_cache_size=0, timeout=3
        )
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        port: int = await conn.fetchval("SELECT inet_server_port()")
        writable = not await conn.fetchval("SELECT pg_is_in_recovery()")
        return port if writable else None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        await conn.close()


async def test_after_a_switchover_pgbouncer_sends_writes_to_the_new_primary(
    api_settings: ApiSettings,
) -> None:
    members = postgres_members()
    leader = next(m for m in members if m["role"] == "leader")
    candidate = next(m for m in members if m["role"] == "sync_standby")
    assert await _served_port(api_settings) == int(leader["port"]) == _routed_port()

    patroni(
        leader, "POST", "/switchover", {"leader": leader["name"], "candidate": candidate["name"]}
    )

    deadline = time.monotonic() + 60
    while await _served_port(api_settings) != int(candidate["port"]):
        assert time.monotonic() < deadline, "PgBouncer did not follow the switchover"
        await asyncio.sleep(0.5)
    assert _routed_port() == int(candidate["port"])
    # The old primary comes back as a replica; the cluster is whole again.
    deadline = time.monotonic() + 60
    while not any(
        m["name"] == leader["name"] and m["state"] in ("running", "streaming")
        for m in postgres_members()
    ):
        assert time.monotonic() < deadline, "the old primary did not rejoin"
        await asyncio.sleep(0.5)
