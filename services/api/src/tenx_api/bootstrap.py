"""Builds the api service once, at startup: clients, the session router, the
cache, the handlers' dependencies; and closes them at shutdown."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker

from tenx_api.adapters.orm import outbox
from tenx_api.service_layer.deps import ApiDeps
from tenx_api.settings import Settings
from tenx_common.cache import Cache
from tenx_common.health import Check
from tenx_common.infra import Infra, open_infra
from tenx_common.tokens import TokenVerifier
from tenx_common.uow import UnitOfWork


@dataclass
class Container:
    infra: Infra
    deps: ApiDeps

    @property
    def checks(self) -> Sequence[Check]:
        return self.infra.checks

    @property
    def redis(self) -> Redis | None:
        return self.infra.redis

    @property
    def verifier(self) -> TokenVerifier | None:
        return self.infra.verifier


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Container]:
    async with open_infra(settings) as infra:
        assert infra.engines is not None
        assert infra.redis is not None
        assert infra.router is not None
        sessions = async_sessionmaker(infra.engines.primary, expire_on_commit=False)
        deps = ApiDeps(
            settings=settings,
            uow=lambda: UnitOfWork(sessions, outbox=outbox, source="/tenx/api"),
            router=infra.router,
            cache=Cache(infra.redis, prefix="api:cache"),
        )
        yield Container(infra=infra, deps=deps)
