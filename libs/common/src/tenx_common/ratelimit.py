"""Fixed-window counters in Redis, shared by every instance of a service."""

from dataclasses import dataclass

from redis.asyncio import Redis

# INCR the counter, start its window on the first hit; return count and TTL.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` hits per ``window_s`` seconds."""

    count: int
    window_s: int


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int
    retry_after_s: int


class RateLimiter:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, limit: Limit) -> Verdict:
        """Count one hit; allowed while the window holds at most ``limit.count``."""
        count, ttl = await self._redis.eval(_HIT, 1, self._key(key), limit.window_s)
        allowed = int(count) <= limit.count
        return Verdict(
            allowed=allowed,
            remaining=max(0, limit.count - int(count)),
            retry_after_s=0 if allowed else max(1, int(ttl)),
        )

    async def check(self, key: str, limit: Limit) -> Verdict:
        """The verdict for one more hit, without counting it."""
        pipe = self._redis.pipeline()
        pipe.get(self._key(key))
        pipe.ttl(self._key(key))
        raw, ttl = await pipe.execute()
        count = int(raw or 0)
        allowed = count < limit.count
        return Verdict(
            allowed=allowed,
            remaining=max(0, limit.count - count),
            retry_after_s=0 if allowed else max(1, int(ttl)),
        )

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._key(key))

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"
