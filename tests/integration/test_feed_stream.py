"""The live feed's stream in process, on the stack's Redis and database: it
greets with a retry hint, keeps an idle connection open with heartbeats, then
passes on what is published for its user."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data.db import primary_engine
from tenx_notify.service_layer.feed import CHANNEL, FeedHub, stream
from tenx_notify.settings import Settings as NotifySettings


@pytest.fixture
async def parts() -> AsyncIterator[tuple[FeedHub, AsyncEngine, Redis]]:
    settings = NotifySettings()
    redis = Redis.from_url(
        settings.redis_url, password=settings.redis_password.get_secret_value() or None
    )
    engine = primary_engine(settings)
    hub = FeedHub(redis)
    yield hub, engine, redis
    await hub.close()
    await engine.dispose()
    await redis.aclose()


async def test_an_idle_stream_gets_heartbeats_and_then_live_entries(
    parts: tuple[FeedHub, AsyncEngine, Redis],
) -> None:
    hub, engine, redis = parts
    user = uuid.uuid4()
    events = stream(hub, engine, user, last_event_id=None, heartbeat_s=0.2)
    assert await anext(events) == "retry: 2000\n\n"
    assert await asyncio.wait_for(anext(events), 5) == ": heartbeat\n\n"
    assert await asyncio.wait_for(anext(events), 5) == ": heartbeat\n\n"
    entry = {"seq": 7, "kind": "test", "data": {}}
    waiting: asyncio.Future[str] = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.05)
    await redis.publish(CHANNEL + str(user), json.dumps(entry))
    sent = await asyncio.wait_for(waiting, 5)
    while sent.startswith(":"):  # a heartbeat may come first
        sent = await asyncio.wait_for(anext(events), 5)
    assert sent.startswith("id: 7\nevent: notification\ndata: ")
    await events.aclose()  # type: ignore[attr-defined]
    assert hub.streams == 0
