"""What the api's handlers need; built once by the bootstrap."""

from collections.abc import Callable
from dataclasses import dataclass

from elasticsearch import AsyncElasticsearch

from tenx_api.domain.payments import PaymentProvider
from tenx_api.service_layer.backlog import SagaBacklog
from tenx_api.settings import Settings
from tenx_common.data import Cache, SessionRouter, UnitOfWork


@dataclass
class ApiDeps:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    sessions: SessionRouter  # writes to the primary, reads to the replicas (read-your-writes)
    cache: Cache
    payments: PaymentProvider
    es: AsyncElasticsearch
    backlog: SagaBacklog  # new orders wait while it is past its bound

    async def committed(self, client: str, *cache_keys: str) -> None:
        """After a commit: the writing client, and every cached copy rebuilt from
        now on, read the change (never a replica that has not replayed it); then
        the cached copies go."""
        await self.sessions.record_write(client, *cache_keys)
        if cache_keys:
            await self.cache.invalidate(*cache_keys)
