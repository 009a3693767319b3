"""Rate limits in Redis, shared by every instance of a service.

Two shapes: a fixed-window counter (``RateLimiter``: counting failed logins)
and a token bucket by GCRA (``TokenBuckets``: request rates with a burst).
"""

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

# GCRA on Redis' own clock: KEYS[1] holds the theoretical arrival time (ms).
# ARGV: emission interval (ms), burst (requests). Returns allowed, remaining,
# retry-after (ms), reset (ms).
_GCRA = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
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
    """Fixed windows: ``check`` before an attempt, ``hit`` to count a failure."""

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


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_minute`` requests a minute on average, ``burst`` at once."""

    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class BucketVerdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    reset_s: int


class TokenBuckets:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self.redis = redis
        self._prefix = prefix

    async def take(self, key: str, rate: Rate) -> BucketVerdict:
        interval_ms = max(1, 60_000 // rate.per_minute)
        allowed, remaining, retry_ms, reset_ms = await self.redis.eval(
            _GCRA, 1, f"{self._prefix}:{key}", interval_ms, rate.burst
        )
        return BucketVerdict(
            allowed=bool(allowed),
            limit=rate.burst,
            remaining=int(remaining),
            retry_after_s=-(-int(retry_ms) // 1000),
            reset_s=-(-int(reset_ms) // 1000),
        )
