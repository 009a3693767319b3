"""The Redis client every service shares for cache, rate limits and denylists,
and the cache-aside helper."""

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, Metric
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tenx_common.loops.group_commit import GroupCommit
from tenx_common.loops.supervised import supervised
from tenx_common.observability.telemetry import TracedRedis
from tenx_common.settings import RedisSettings
from tenx_common.web.health import Check

log = logging.getLogger(__name__)


def create_redis(settings: RedisSettings) -> Redis:
    """A client over a bounded pool: past ``redis_max_connections`` callers wait
    (up to ``redis_pool_timeout_s``) for a free connection instead of failing.
    A command that meets a lost connection (Redis restarted; every pooled
    socket is dead) is sent again on a new one, twice at most: without it each
    dead socket costs one failed request. A retried write may land twice; what
    we write (cache fills, rate-limit tokens, denylist entries) tolerates that.
    A timeout is not retried: redis-py retries a connect inside each command's
    retries, so a Redis that accepts and never answers would cost nine
    timeouts; it costs one."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() or None,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=settings.redis_socket_timeout_s,
        health_check_interval=30,
        retry=Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
    )
    return TracedRedis.from_pool(pool)


def redis_check(client: Redis) -> Check:
    async def probe() -> None:
        await client.ping()

    return Check("redis", probe)


class NearCache:
    """This process's copy of hot cache entries, for readers that may see a
    change late by the time its invalidation takes to cross Redis pub/sub.

    ``Cache.invalidate`` drops the local copies at once and publishes the keys;
    every process drops its copies when the message arrives. A copy lives at
    most ``ttl_s``; a subscriber that loses its connection drops everything. A
    fill stores its value only if the key was not dropped since the fill began.
    """

    def __init__(
        self,
        *,
        channel: str,
        ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stopping = asyncio.Event()
        self.channel = channel
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._drops: dict[str, int] = {}
        self._epoch = 0

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def version(self, key: str) -> tuple[int, int]:
        return self._epoch, self._drops.get(key, 0)

    def put(self, key: str, value: bytes, *, version: tuple[int, int]) -> None:
        if self.version(key) != version:
            return  # dropped while it loaded: the value may be old
        if len(self._entries) >= self._max_entries:
            self.clear()
        self._entries[key] = (self._clock() + self._ttl_s, value)

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)
            self._drops[key] = self._drops.get(key, 0) + 1
        if len(self._drops) > 2 * self._max_entries:
            self.clear()

    def clear(self) -> None:
        """Drop every copy; no fill that began before this stores its value."""
        self._epoch += 1
        self._entries.clear()
        self._drops.clear()

    async def listen(self, redis: Redis) -> None:
        """Drop what other processes invalidate, until cancelled or ``stopping``
        is set (redis-py's pub/sub read can swallow a cancel: the event ends it
        then). A lost subscription drops every copy, and is made again a
        second later (``loops.supervised``)."""

        async def subscribed() -> None:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.clear()  # what was published while unsubscribed is unknown
                    while not self.stopping.is_set():
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=5.0
                        )
                        if message is not None:
                            data = message["data"]
                            text = data.decode() if isinstance(data, bytes) else str(data)
                            self.drop(text.split("\n"))
            except Exception:
                self.clear()
                raise

        await supervised(
            subscribed,
            stopping=self.stopping,
            what="near cache: subscription lost, every copy dropped",
            logger=log,
        )


class Cache:
    """Cache-aside over Redis with stampede protection.

    On a miss, one coroutine per process loads the value (the others await the
    same future), and across processes a short Redis lock lets one instance
    rebuild while the others poll for the value it writes.

    Each key has a generation that ``invalidate`` bumps: a rebuild stores its
    value only if the generation it started under is still current, so a load
    that read the data before a change can never put the old value back.
    Invalidations that arrive while one is being written share the next
    round trip and the next message to the near copies (group commit: at
    load, every order drops its products' copies).
    """

    _RELEASE = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
        " return 0"
    )
    _SET_IF_GENERATION = (
        "if (redis.call('GET', KEYS[2]) or '') == ARGV[3] then"
        " return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end return 0"
    )
    _GENERATION_TTL_S = 3600  # far longer than any rebuild

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        lock_ttl_s: float = 5.0,
        poll_s: float = 0.02,
        near: NearCache | None = None,
    ) -> None:
        self._redis = redis
        self.near = near
        self._prefix = prefix
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._poll_s = poll_s
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}
        self.lookups: collections.Counter[str] = collections.Counter()  # by result
        self._invalidations: GroupCommit[tuple[str, ...]] = GroupCommit(self._drop_together)

    async def get_or_load(
        self,
        key: str,
        load: Callable[[], Awaitable[bytes | None]],
        *,
        ttl_s: int,
        near: bool = False,
    ) -> bytes | None:
        """The cached value, else ``load``'s (stored). With ``near``, this
        process's copy may answer (see NearCache): only for readers that may see
        a change a moment late."""
        if not near or self.near is None:
            return await self._get_or_load(key, load, ttl_s=ttl_s)
        if (copy := self.near.get(key)) is not None:
            self.lookups["near_hit"] += 1
            return copy
        version = self.near.version(key)
        value = await self._get_or_load(key, load, ttl_s=ttl_s)
        if value is not None:
            self.near.put(key, value, version=version)
        return value

    async def _get_or_load(
        self, key: str, load: Callable[[], Awaitable[bytes | None]], *, ttl_s: int
    ) -> bytes | None:
        cached = await self._get(key)
        if cached is not None:
            self.lookups["hit"] += 1
            return cached
        self.lookups["miss"] += 1
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._rebuild(key, load, ttl_s=ttl_s)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    def collect(self) -> Iterator[Metric]:
        """Lookups by result (``hit``, ``near_hit``: this process's copy, ``miss``):
        the hit ratio is (hit + near_hit) / all."""
        lookups = CounterMetricFamily(
            "tenx_cache_lookups", "Cache lookups by result", labels=["cache", "result"]
        )
        for result in ("hit", "near_hit", "miss"):
            lookups.add_metric([self._prefix, result], self.lookups[result])
        yield lookups

    async def invalidate(self, *keys: str) -> None:
        """Drop ``keys``; call after the change is committed."""
        await self._invalidations.submit(keys)

    async def _drop_together(self, batch: Sequence[tuple[str, ...]]) -> list[bool]:
        keys = list(dict.fromkeys(key for keys in batch for key in keys))
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(self._key(key) + ":gen")
                pipe.expire(self._key(key) + ":gen", self._GENERATION_TTL_S)
                pipe.delete(self._key(key))
            if self.near is not None:
                pipe.publish(self.near.channel, "\n".join(keys))
            await pipe.execute()
        if self.near is not None:
            self.near.drop(keys)
        return [True] * len(batch)

    async def _rebuild(
        self, key: str, load: Callable[[], Awaitable[bytes | None]], *, ttl_s: int
    ) -> bytes | None:
        lock, token = self._key(key) + ":lock", uuid.uuid4().hex
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        while not await self._redis.set(lock, token, nx=True, px=self._lock_ttl_ms):
            # Another instance is rebuilding: wait for its value, or for its lock to go.
            await asyncio.sleep(self._poll_s)
            cached = await self._get(key)
            if cached is not None:
                return cached
            if time.monotonic() > deadline:
                return await load()  # the rebuilder is stuck: serve from the source
        try:
            current, generation = await self._redis.mget(self._key(key), self._key(key) + ":gen")
            if current is not None:
                return current.encode() if isinstance(current, str) else bytes(current)
            value = await load()
            if value is not None:
                await self._redis.eval(
                    self._SET_IF_GENERATION,
                    2,
                    self._key(key),
                    self._key(key) + ":gen",
                    value,
                    ttl_s,
                    generation or "",
                )
            return value
        finally:
            await self._redis.eval(self._RELEASE, 1, lock, token)

    async def _get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._key(key))
        return value.encode() if isinstance(value, str) else value

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"
