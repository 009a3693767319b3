"""Builds the api service once, at startup: clients, the session router, the
cache, the saga backlog's watch, the handlers' dependencies; and closes them at
shutdown."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tenx_api.adapters.orm import outbox
from tenx_api.adapters.payments import SandboxPayments
from tenx_api.service_layer import orders
from tenx_api.service_layer.backlog import SagaBacklog
from tenx_api.service_layer.deps import ApiDeps
from tenx_api.settings import Settings
from tenx_common.data import Cache, NearCache
from tenx_common.loops import every, stop_task
from tenx_common.runtime import ServiceWiring, open_infra

ApiWiring = ServiceWiring[ApiDeps]


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[ApiWiring]:
    async with open_infra(settings) as infra:
        near = NearCache(channel="api:cache:invalidated", ttl_s=settings.near_cache_ttl_s)
        cache = Cache(infra.redis, prefix="api:cache", near=near)
        backlog = SagaBacklog(max_age_s=settings.saga_backlog_max_age_s)
        infra.collectors.extend((cache, backlog))
        deps = ApiDeps(
            settings=settings,
            uow=infra.unit_of_work(outbox=outbox, source="/tenx/api"),
            sessions=infra.router,
            cache=cache,
            payments=SandboxPayments(infra.engines.sessions),
            es=infra.elasticsearch,
        )
        listener = asyncio.create_task(near.listen(infra.redis), name="near-cache-listener")
        try:
            async with (
                every(
                    settings.idempotency_sweep_interval_s,
                    lambda: orders.sweep_idempotency_keys(deps=deps),
                    name="idempotency-key-sweep",
                ),
                every(
                    settings.saga_backlog_poll_s,
                    lambda: backlog.measure(infra.engines.primary),
                    name="saga-backlog",
                ),
            ):
                # New orders refused while the backlog is past its bound: before
                # admission, so such a refusal waits for no place.
                refusals = {"POST /v1/orders": backlog.refusal}
                yield ServiceWiring(infra=infra, deps=deps, refusals=refusals)
        finally:
            near.stopping.set()
            await stop_task(listener)
