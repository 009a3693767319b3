"""What notify's handlers need; built once by the bootstrap."""

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data import UnitOfWork
from tenx_notify.service_layer.feed import FeedHub
from tenx_notify.settings import Settings


@dataclass
class NotifyDeps:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    engine: AsyncEngine
    listener: AsyncEngine  # LISTEN's connection (Engines.for_listening)
    redis: Redis
    hub: FeedHub
    fernet: Fernet  # the webhooks' secrets, at rest
