"""Builds the notify service once, at startup: clients, the live feed's hub,
the handlers' dependencies; and closes them at shutdown."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cryptography.fernet import Fernet

from tenx_common.runtime import ServiceWiring, open_infra
from tenx_common.security import load_fernet
from tenx_notify.adapters.orm import outbox
from tenx_notify.service_layer.deps import NotifyDeps
from tenx_notify.service_layer.feed import FeedHub
from tenx_notify.settings import Settings

NotifyWiring = ServiceWiring[NotifyDeps]


def secret_encryption(settings: Settings) -> Fernet:
    return load_fernet(settings, "secret_encryption_key", encrypts="webhook secrets")


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[NotifyWiring]:
    fernet = secret_encryption(settings)
    async with open_infra(settings) as infra:
        hub = FeedHub(infra.redis)
        deps = NotifyDeps(
            settings=settings,
            uow=infra.unit_of_work(outbox=outbox, source="/tenx/notify"),
            engine=infra.engines.primary,
            listener=infra.engines.for_listening,
            redis=infra.redis,
            hub=hub,
            fernet=fernet,
        )
        try:
            yield ServiceWiring(infra=infra, deps=deps)
        finally:
            await hub.close()
