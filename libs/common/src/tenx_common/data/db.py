"""SQLAlchemy async engines for the primary and its read replicas."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from tenx_common.observability.telemetry import trace_engine
from tenx_common.settings import PostgresSettings
from tenx_common.web.health import Check


@dataclass(eq=False)  # also a Prometheus collector: hashed by identity
class Engines:
    primary: AsyncEngine
    replicas: list[AsyncEngine] = field(default_factory=list)
    # Connections that LISTEN (settings.session_url); None: the primary's.
    listener: AsyncEngine | None = None
    # The primary's sessions: the one factory that the session router's writes,
    # every unit of work and the adapters that open sessions share.
    sessions: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = async_sessionmaker(self.primary, expire_on_commit=False)

    @property
    def for_listening(self) -> AsyncEngine:
        return self.listener or self.primary

    async def dispose(self) -> None:
        for engine in (self.primary, *self.replicas, *([self.listener] if self.listener else [])):
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


def bounded_waits(settings: PostgresSettings, *, pooled: bool = True) -> dict[str, Any]:
    """``create_async_engine`` options that bound how long a caller waits for a
    database that cannot be reached: asyncpg's connect (TCP, TLS and sign-in),
    and a checkout from a pool with no free connection. Statements themselves
    have no timeout (migrations and exports run long). With ``pooled`` (a
    connection to ``database_url``), the statement cache of the settings."""
    connect_args: dict[str, Any] = {"timeout": settings.database_connect_timeout_s}
    if pooled and settings.database_statement_cache_size == 0:
        # asyncpg's cache off: it then prepares each statement unnamed, which
        # the next statement's Parse replaces, so a server connection
        # PgBouncer hands to another client after the transaction holds
        # nothing of this one's (no named statements to pile up, no reset
        # query to run after every transaction).
        connect_args["statement_cache_size"] = 0
        # SQLAlchemy's cache stays on (its default, 100 statements per
        # client connection): it keeps what a statement's first Parse and
        # Describe told (its parameter and column types). asyncpg parses an
        # unnamed statement again at every execution, so a cached one goes
        # out as Parse, Bind, Execute and Sync in one round trip, whichever
        # server connection PgBouncer gives it. With both caches off, each
        # execution was two round trips (Parse and Describe first) and two
        # parses.
        # asyncpg asks for client_encoding 'utf-8' (quoted), which PgBouncer
        # never finds equal to the server's UTF8, so it sent a SET before
        # every transaction; named the server's way (the later value of the
        # startup packet wins), the two match.
        connect_args["server_settings"] = {"client_encoding": "UTF8"}
    return {"pool_timeout": settings.database_pool_timeout_s, "connect_args": connect_args}


def primary_engine(settings: PostgresSettings, **options: Any) -> AsyncEngine:
    """An engine on ``database_url`` (through the pooler, where there is one)
    with the connect options it needs; ``options`` go to create_async_engine."""
    return create_async_engine(settings.primary_url(), **(bounded_waits(settings) | options))


def _engine(
    url: URL, settings: PostgresSettings, *, pooled: bool = False, **sizes: int
) -> AsyncEngine:
    options = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_pool_overflow,
    } | sizes
    engine = create_async_engine(url, **options, **bounded_waits(settings, pooled=pooled))
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
        primary=_engine(settings.primary_url(), settings, pooled=True),
        replicas=[_engine(url, settings) for url in settings.replica_url_list()],
        # A process listens on a channel or two, each on a connection of its own.
        listener=_engine(settings.session_url(), settings, pool_size=1, max_overflow=3)
        if settings.database_session_url
        else None,
    )


def postgres_check(engine: AsyncEngine, *, name: str = "postgres") -> Check:
    async def probe() -> None:
        await read_value(engine, "SELECT 1")

    return Check(name, probe)
