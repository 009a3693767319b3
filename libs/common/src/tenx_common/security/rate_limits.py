"""Rate limits in Redis, shared by every instance of a service.

Two shapes: a fixed-window counter (``RateLimiter``: counting failed logins)
and a token bucket by GCRA (``TokenBuckets``: request rates with a burst).
"""

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redis.asyncio import Redis

# INCR the counter, start its window on the first hit; return count and TTL.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""

# GCRA on Redis' own clock, for each bucket of KEYS: KEYS[i] holds its
# theoretical arrival time (ms); ARGV[3i-2..3i]: its emission interval (ms),
# burst (requests), tokens wanted. Takes as many of the wanted tokens as the
# bucket holds, at least one or none. Returns, bucket after bucket, granted,
# remaining, retry-after (ms), reset (ms).
_GCRA = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local available = math.floor((now - tat + burst * interval) / interval)
  if available < 1 then
    for _, v in ipairs({0, 0, tat + interval - burst * interval - now, tat - now}) do
      out[#out + 1] = v
    end
  else
    local granted = math.min(want, available)
    local new_tat = tat + granted * interval
    redis.call('SET', key, new_tat, 'PX', new_tat - now)
    for _, v in ipairs({granted, available - granted, 0, new_tat - now}) do
      out[#out + 1] = v
    end
  end
end
return out
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


MAX_LEASE = 100


def lease_size(rate: Rate, max_lease: int = MAX_LEASE) -> int:
    """Tokens one instance takes at a time: a twentieth of the burst, 1 to
    ``max_lease``. Small buckets (a burst under 40, such as writes) are not
    leased: a client that alternates between instances slowly would leave a
    token unspent on each."""
    return max(1, min(max_lease, rate.burst // 20))


@dataclass(slots=True)
class _Lease:
    tokens: int
    remaining: int
    reset_s: int
    expires_at: float
    refused_until: float = 0.0


class _Grant(NamedTuple):
    """A bucket's answer from the script: the tokens leased (0: refused), the
    tokens left in it, and in how many ms a token and a full bucket are due."""

    granted: int
    remaining: int
    retry_ms: int
    reset_ms: int


class TokenBuckets:
    """Token buckets shared through Redis, leased a few tokens at a time.

    An instance takes up to a twentieth of a bucket's burst (at most
    ``max_lease``) in one round trip and spends it locally for up to
    ``lease_s``; a busy client costs one Redis call per lease, not per request.
    Leased tokens come out of the shared bucket, so all instances together
    never pass more than the rate allows; a lease unused when it expires is
    lost, so a client may be refused up to ``lease - 1`` tokens early per
    instance (never late). A refusal is remembered until the bucket can hold a
    token again, so a client hammering past its limit costs no round trips.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        lease_s: float = 1.0,
        max_lease: int = MAX_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self._prefix = prefix
        self._lease_s = lease_s
        self._max_lease = max_lease
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def take(self, key: str, rate: Rate) -> BucketVerdict:
        return (await self.take_all([(key, rate)]))[0]

    async def take_all(self, wanted: Sequence[tuple[str, Rate]]) -> list[BucketVerdict]:
        """A token of each bucket of ``wanted`` (key, rate): those their leases
        do not answer are leased together, in one round trip."""
        verdicts: list[BucketVerdict | None] = []
        for key, rate in wanted:
            # Requests for one key that arrive while a lease is being fetched wait
            # for it and share it, rather than each taking a lease of its own.
            while (verdict := self._from_lease(key, rate)) is None and key in self._pending:
                await asyncio.shield(self._pending[key])
            verdicts.append(verdict)
        missing = [i for i, verdict in enumerate(verdicts) if verdict is None]
        if missing:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            mine = [wanted[i][0] for i in missing if wanted[i][0] not in self._pending]
            self._pending.update(dict.fromkeys(mine, done))
            try:
                leased = await self._lease([wanted[i] for i in missing])
            finally:
                for key in mine:
                    del self._pending[key]
                done.set_result(None)
            for i, verdict in zip(missing, leased, strict=True):
                verdicts[i] = verdict
        return [verdict for verdict in verdicts if verdict is not None]

    def _from_lease(self, key: str, rate: Rate) -> BucketVerdict | None:
        now = self._clock()
        lease = self._leases.get(key)
        if lease is None:
            return None
        if now < lease.refused_until:  # the bucket is empty till then
            return BucketVerdict(
                allowed=False,
                limit=rate.burst,
                remaining=0,
                retry_after_s=max(1, math.ceil(lease.refused_until - now)),
                reset_s=lease.reset_s,
            )
        if lease.tokens > 0 and now < lease.expires_at:
            lease.tokens -= 1
            return BucketVerdict(
                allowed=True,
                limit=rate.burst,
                remaining=lease.remaining + lease.tokens,
                retry_after_s=0,
                reset_s=lease.reset_s,
            )
        return None

    async def _lease(self, wanted: Sequence[tuple[str, Rate]]) -> list[BucketVerdict]:
        args: list[int] = []
        for _, rate in wanted:
            interval_ms = max(1, 60_000 // rate.per_minute)
            args += (interval_ms, rate.burst, lease_size(rate, self._max_lease))
        keys = [f"{self._prefix}:{key}" for key, _ in wanted]
        now = self._clock()
        answers = await self.redis.eval(_GCRA, len(keys), *keys, *args)
        return [
            self._leased(key, rate, now, _Grant(*map(int, answers[4 * i : 4 * i + 4])))
            for i, (key, rate) in enumerate(wanted)
        ]

    def _leased(self, key: str, rate: Rate, now: float, grant: _Grant) -> BucketVerdict:
        granted, remaining, retry_ms, reset_ms = grant
        reset_s = -(-reset_ms // 1000)
        if granted == 0:
            self._leases[key] = _Lease(
                tokens=0,
                remaining=0,
                reset_s=reset_s,
                expires_at=now,
                refused_until=now + retry_ms / 1000,
            )
            return BucketVerdict(
                allowed=False,
                limit=rate.burst,
                remaining=0,
                retry_after_s=-(-retry_ms // 1000),
                reset_s=reset_s,
            )
        if len(self._leases) > 10_000:
            self._leases = {k: v for k, v in self._leases.items() if v.expires_at > now}
        self._leases[key] = _Lease(
            tokens=granted - 1,
            remaining=remaining,
            reset_s=reset_s,
            expires_at=now + self._lease_s,
        )
        return BucketVerdict(
            allowed=True,
            limit=rate.burst,
            remaining=remaining + granted - 1,
            retry_after_s=0,
            reset_s=reset_s,
        )
