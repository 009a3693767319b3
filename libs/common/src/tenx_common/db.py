"""SQLAlchemy async engines for the primary and its read replicas."""

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenx_common.health import Check
from tenx_common.settings import PostgresSettings


@dataclass
class Engines:
    primary: AsyncEngine
    replicas: list[AsyncEngine] = field(default_factory=list)

    async def dispose(self) -> None:
        for engine in (self.primary, *self.replicas):
            await engine.dispose()


def _engine(url: URL) -> AsyncEngine:
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def create_engines(settings: PostgresSettings) -> Engines:
    return Engines(
        primary=_engine(settings.primary_url()),
        replicas=[_engine(url) for url in settings.replica_url_list()],
    )


def postgres_check(engine: AsyncEngine, *, name: str = "postgres") -> Check:
    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return Check(name, probe)
