"""Builds the notify service's clients once, at startup, and closes them at shutdown."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from redis.asyncio import Redis

from tenx_common.cache import create_redis, redis_check
from tenx_common.db import Engines, create_engines, postgres_check
from tenx_common.health import Check
from tenx_common.kafka import kafka_check
from tenx_common.mail import smtp_check
from tenx_notify.settings import Settings


@dataclass
class Container:
    engines: Engines
    redis: Redis
    checks: list[Check] = field(default_factory=list)


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Container]:
    engines = create_engines(settings)
    redis = create_redis(settings)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engines.dispose)
        stack.push_async_callback(redis.aclose)
        yield Container(
            engines=engines,
            redis=redis,
            checks=[
                postgres_check(engines.primary),
                redis_check(redis),
                kafka_check(settings),
                smtp_check(settings),
            ],
        )
