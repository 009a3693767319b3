"""SQLAlchemy async engines for the primary and its read replicas."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenx_common.health import Check
from tenx_common.settings import PostgresSettings
from tenx_common.telemetry import trace_engine


@dataclass(eq=False)  # also a Prometheus collector: hashed by identity
class Engines:
    primary: AsyncEngine
    replicas: list[AsyncEngine] = field(default_factory=list)

    async def dispose(self) -> None:
        for engine in (self.primary, *self.replicas):
            await engine.dispose()

    def collect(self) -> Iterator[Metric]:
        """Connection pool use per engine: checked out, idle, the pool's size."""
        used = GaugeMetricFamily(
            "tenx_db_pool_connections", "Pool connections by state", labels=["engine", "state"]
        )
        size = GaugeMetricFamily(
            "tenx_db_pool_size", "Connections the pool keeps (overflow above it)", labels=["engine"]
        )
        names = ["primary", *(f"replica-{i}" for i in range(1, len(self.replicas) + 1))]
        for name, engine in zip(names, (self.primary, *self.replicas), strict=True):
            pool: Any = engine.pool
            used.add_metric([name, "checked_out"], pool.checkedout())
            used.add_metric([name, "idle"], pool.checkedin())
            size.add_metric([name], pool.size())
        yield from (used, size)


def bounded_waits(settings: PostgresSettings) -> dict[str, Any]:
    """``create_async_engine`` options that bound how long a caller waits for a
    database that cannot be reached: asyncpg's connect (TCP, TLS and sign-in),
    and a checkout from a pool with no free connection. Statements themselves
    have no timeout (migrations and exports run long)."""
    return {
        "pool_timeout": settings.database_pool_timeout_s,
        "connect_args": {"timeout": settings.database_connect_timeout_s},
    }


def _engine(url: URL, settings: PostgresSettings) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=5, max_overflow=5, **bounded_waits(settings))
    replace_closed_connections(engine)
    return trace_engine(engine)


def replace_closed_connections(engine: AsyncEngine) -> None:
    """At checkout, a pooled connection whose server side has gone (a restart,
    a terminated backend: the server closes the socket, and asyncpg knows it
    without a round trip) is replaced by a new one.

    This stands in for ``pool_pre_ping``, which costs three round trips per
    checkout (BEGIN, an empty statement, ROLLBACK: 12 % of the saga runner's
    CPU under load). A connection that died without its socket closing fails
    its first statement instead; SQLAlchemy then invalidates every connection
    of the pool that is older, and that one request is answered 503."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")


async def read_value(engine: AsyncEngine, statement: str) -> Any:
    """The one value of a read-only ``statement``, in one round trip: on the
    driver's connection, outside a transaction (through SQLAlchemy it would be
    BEGIN, the statement, ROLLBACK)."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        return await raw.driver_connection.fetchval(statement)  # type: ignore[union-attr]


def create_engines(settings: PostgresSettings) -> Engines:
    return Engines(
        primary=_engine(settings.primary_url(), settings),
        replicas=[_engine(url, settings) for url in settings.replica_url_list()],
    )


def postgres_check(engine: AsyncEngine, *, name: str = "postgres") -> Check:
    async def probe() -> None:
        await read_value(engine, "SELECT 1")

    return Check(name, probe)
