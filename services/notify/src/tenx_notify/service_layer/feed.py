"""The in-app feed: listing, marking read, and the live stream (SSE).

A new notification is published on Redis (``notify:feed:<user id>``) after the
transaction that wrote it commits, whichever notify process wrote it. Each
process holds one pattern subscription (``FeedHub``) and hands each message to
the streams of that user it serves, so any number of instances can serve any
stream. A stream starts after the client's ``Last-Event-ID`` (the feed's
``seq``): what it missed comes from the database first, then live messages,
skipping what was already sent. When the subscription had to be re-made, every
stream re-reads the database from its last id, so a lost message is never lost
for good. A comment line every ``sse_heartbeat_s`` keeps idle connections open.

A stream without ``Last-Event-ID`` starts after the newest entry. At most
``BACKLOG_LIMIT`` (500) missed entries are replayed; a stream that falls 1,000
messages behind (its queue is full) re-reads the database from its last id
too. The route answers with ``X-Accel-Buffering: no`` so that the edge passes
each event on at once. The feed itself lists newest first, by keyset on
``seq``; someone else's entry is 404.
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.loops import stop_task, supervised
from tenx_common.web import ProblemError, decode_cursor, encode_cursor, unavailable
from tenx_notify.adapters.orm import Notification

if TYPE_CHECKING:  # the deps hold this module's FeedHub: imported for the annotations only
    from tenx_notify.service_layer.deps import NotifyDeps

log = logging.getLogger(__name__)

CHANNEL = "notify:feed:"
BACKLOG_LIMIT = 500  # at most this many missed notifications are replayed on a reconnect
RESYNC = None  # put in every queue when the subscription was re-made


def public(notification: Notification | Row[Any]) -> dict[str, Any]:
    return {
        "id": str(notification.id),
        "seq": notification.seq,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "data": notification.data,
        "created_at": notification.created_at.isoformat(),
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
    }


class FeedHub:
    """One Redis pattern subscription per process, fanned out to its streams."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._streams: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.ready = asyncio.Event()

    async def publish(self, user_id: uuid.UUID, document: dict[str, Any]) -> None:
        await self._redis.publish(CHANNEL + str(user_id), json.dumps(document))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, user_id: uuid.UUID
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="feed-hub")
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
        streams = self._streams.setdefault(str(user_id), set())
        streams.add(queue)
        try:
            yield queue
        finally:
            streams.discard(queue)
            if not streams:
                self._streams.pop(str(user_id), None)

    @property
    def streams(self) -> int:
        return sum(len(queues) for queues in self._streams.values())

    async def _listen(self) -> None:
        """Fan out every message until ``close``; a lost subscription is made
        again a second later (``loops.supervised``), and every stream re-reads
        what it missed (``RESYNC``)."""

        async def subscribed() -> None:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(CHANNEL + "*")
                    self._broadcast_resync()
                    self.ready.set()
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage":
                            self._deliver(message["channel"], message["data"])
            finally:
                self.ready.clear()

        await supervised(
            subscribed,
            stopping=self._closing,
            what="feed hub: the Redis subscription failed; re-subscribing",
            logger=log,
        )

    def _deliver(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        document = json.loads(data)
        for queue in self._streams.get(name[len(CHANNEL) :], ()):
            if queue.full():  # a stream too slow to keep up re-reads the database
                queue.get_nowait()
                queue.put_nowait(RESYNC)
            else:
                queue.put_nowait(document)

    def _broadcast_resync(self) -> None:
        for queues in self._streams.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(RESYNC)

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            await stop_task(self._task)


async def since(engine: AsyncEngine, user_id: uuid.UUID, seq: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Notification.__table__)
            .where(Notification.user_id == user_id, Notification.seq > seq)
            .order_by(Notification.seq)
            .limit(BACKLOG_LIMIT)
        )
        return [public(Notification(**row._mapping)) for row in rows]


async def latest_seq(engine: AsyncEngine, user_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(func.max(Notification.seq)).where(Notification.user_id == user_id)
        )
    return int(found or 0)


def sse(document: dict[str, Any]) -> str:
    return f"id: {document['seq']}\nevent: notification\ndata: {json.dumps(document)}\n\n"


async def stream(
    hub: FeedHub,
    engine: AsyncEngine,
    user_id: uuid.UUID,
    *,
    last_event_id: int | None,
    heartbeat_s: float,
) -> AsyncIterator[str]:
    """The events of one client's stream, until it goes away. Everything that
    needs Redis or the database to start happens before the first event."""
    async with hub.subscribe(user_id) as queue:
        try:
            async with asyncio.timeout(10):
                await hub.ready.wait()
        except TimeoutError:
            raise unavailable(dependency="redis") from None  # the hub cannot subscribe
        last = last_event_id if last_event_id is not None else await latest_seq(engine, user_id)
        backlog = await since(engine, user_id, last)
        yield "retry: 2000\n\n"
        for document in backlog:
            last = document["seq"]
            yield sse(document)
        while True:
            try:
                async with asyncio.timeout(heartbeat_s):
                    item = await queue.get()
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            missed = [item] if item is not RESYNC else await since(engine, user_id, last)
            for document in missed:
                if document is not None and document["seq"] > last:
                    last = document["seq"]
                    yield sse(document)


def live_feed(
    user_id: uuid.UUID, *, last_event_id: int | None, deps: "NotifyDeps"
) -> AsyncIterator[str]:
    """The user's stream (``stream``) on this process's hub and the primary."""
    return stream(
        deps.hub,
        deps.engine,
        user_id,
        last_event_id=last_event_id,
        heartbeat_s=deps.settings.sse_heartbeat_s,
    )


async def list_feed(
    user_id: uuid.UUID, *, limit: int, cursor: str | None, deps: "NotifyDeps"
) -> tuple[list[dict[str, Any]], str | None]:
    """The user's notifications, newest first (keyset on seq)."""
    query = (
        select(Notification.__table__)
        .where(Notification.user_id == user_id)
        .order_by(Notification.seq.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        before = decode_cursor(cursor, lambda p: int(p["seq"]))
        query = query.where(Notification.seq < before)
    async with deps.engine.connect() as conn:
        rows = [Notification(**row._mapping) for row in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return [public(n) for n in rows], (encode_cursor({"seq": str(rows[-1].seq)}) if more else None)


async def mark_read(user_id: uuid.UUID, notification_id: uuid.UUID, *, deps: "NotifyDeps") -> None:
    async with deps.engine.begin() as conn:
        found = await conn.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.user_id == user_id)
            .values(read_at=func.coalesce(Notification.read_at, datetime.now(UTC)))
            .returning(Notification.id)
        )
        if found.first() is None:  # someone else's is "not found" too
            raise ProblemError(status=404, code="not_found", detail="No such notification.")
