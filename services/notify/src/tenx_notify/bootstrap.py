"""Builds the notify service's clients once, at startup, and closes them at shutdown."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tenx_common.infra import Infra, open_infra
from tenx_notify.settings import Settings


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Infra]:
    async with open_infra(settings) as infra:
        yield infra
