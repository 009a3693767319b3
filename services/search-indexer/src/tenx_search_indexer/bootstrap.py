"""Builds the search-indexer once, at startup: clients, its indices (when a
fresh cluster has none), the handlers' dependencies; and closes them at shutdown."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tenx_common.data.elasticsearch import ensure_indices
from tenx_common.runtime import ServiceWiring, open_infra
from tenx_search_indexer.adapters.orm import outbox
from tenx_search_indexer.service_layer.deps import IndexerDeps
from tenx_search_indexer.settings import Settings

IndexerWiring = ServiceWiring[IndexerDeps]


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[IndexerWiring]:
    async with open_infra(settings) as infra:
        await ensure_indices(
            infra.elasticsearch,
            replicas=settings.search_replicas,
            refresh_interval=settings.search_refresh_interval,
        )
        deps = IndexerDeps(
            settings=settings,
            uow=infra.unit_of_work(outbox=outbox, source="/tenx/search-indexer"),
            engine=infra.engines.primary,
            es=infra.elasticsearch,
        )
        yield ServiceWiring(infra=infra, deps=deps)
