"""A Redis whose pub/sub lives in memory, for the subscription loops' unit
tests: the first subscription made is lost at its first read; the next one
hands out what was published (``get_message`` or ``listen``), then waits."""

import asyncio
from collections.abc import AsyncIterator

from redis.exceptions import ConnectionError as RedisConnectionError

Message = dict[str, object]


class FakePubSub:
    def __init__(self, redis: "FakeRedis") -> None:
        self.redis = redis

    async def __aenter__(self) -> "FakePubSub":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def subscribe(self, channel: str) -> None:
        self.redis.subscriptions += 1

    async def psubscribe(self, pattern: str) -> None:
        self.redis.subscriptions += 1

    async def get_message(  # redis-py's signature
        self,
        *,
        ignore_subscribe_messages: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> Message | None:
        self._read()
        if self.redis.published:
            return self._next("message")
        await asyncio.sleep(0.01)
        return None

    async def listen(self) -> AsyncIterator[Message]:
        self._read()
        while self.redis.published:
            yield self._next("pmessage")
        await asyncio.Event().wait()  # nothing more is published

    def _read(self) -> None:
        if self.redis.lose_first:
            self.redis.lose_first = False
            raise RedisConnectionError("connection lost")

    def _next(self, kind: str) -> Message:
        channel, data = self.redis.published.pop(0)
        if not self.redis.published:
            self.redis.delivered.set()
        return {"type": kind, "channel": channel.encode(), "data": data}


class FakeRedis:
    def __init__(self, published: list[tuple[str, bytes]]) -> None:
        self.published = published  # (channel, data), handed out in order
        self.lose_first = True
        self.subscriptions = 0
        self.delivered = asyncio.Event()  # every message handed out

    def pubsub(self) -> FakePubSub:
        return FakePubSub(self)
