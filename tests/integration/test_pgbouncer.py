"""PgBouncer between the services and the primary (docs/data-tier.md): many
client connections share a few server connections (transaction mode), the
session entry keeps LISTEN working, and the pooler follows the primary when
Patroni hands the role to another node."""

import asyncio
import time

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


async def test_a_service_engine_runs_the_same_statement_in_many_transactions(
    api_settings: ApiSettings,
) -> None:
    # Statement caches off, statements unnamed: nothing of a client's is left
    # on the server connections it used (no reset runs between transactions).
    engine = primary_engine(api_settings, pool_size=2)
    try:
        for n in range(50):
            async with engine.begin() as conn:
                found = await conn.scalar(text("SELECT CAST(:n AS int) + 1"), {"n": n})
                assert found == n + 1
                left = await conn.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
                assert left == 0
    finally:
        await engine.dispose()


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
