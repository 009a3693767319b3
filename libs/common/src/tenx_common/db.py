"""SQLAlchemy async engines for the primary and its read replicas."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.engine import URL
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
    return trace_engine(
        create_async_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=5, **bounded_waits(settings)
        )
    )


def create_engines(settings: PostgresSettings) -> Engines:
    return Engines(
        primary=_engine(settings.primary_url(), settings),
        replicas=[_engine(url, settings) for url in settings.replica_url_list()],
    )


def postgres_check(engine: AsyncEngine, *, name: str = "postgres") -> Check:
    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return Check(name, probe)
