"""The Redis client every service shares for cache, rate limits and denylists."""

from redis.asyncio import Redis

from tenx_common.health import Check
from tenx_common.settings import RedisSettings


def create_redis(settings: RedisSettings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() or None,
        decode_responses=False,
        socket_connect_timeout=2,
        health_check_interval=30,
    )


def redis_check(client: Redis) -> Check:
    async def probe() -> None:
        await client.ping()

    return Check("redis", probe)
