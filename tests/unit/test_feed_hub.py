"""The live feed's hub on a fake Redis: a lost subscription is made again,
every open stream is told to re-read what it missed, and what is published
after reaches it."""

import asyncio
import importlib
import json
import uuid

import pytest

from tenx_notify.service_layer.feed import CHANNEL, RESYNC, FeedHub
from tests.support.fake_redis import FakeRedis

# The module (``tenx_common.loops`` names its function ``supervised`` too).
supervised_module = importlib.import_module("tenx_common.loops.supervised")


async def test_a_lost_subscription_is_made_again_and_every_stream_resyncs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervised_module, "pause", lambda stopping, seconds: asyncio.sleep(0))
    user = uuid.uuid4()
    document = {"seq": 1, "kind": "test"}
    hub = FeedHub(FakeRedis([(CHANNEL + str(user), json.dumps(document).encode())]))  # type: ignore[arg-type]
    try:
        async with hub.subscribe(user) as queue:
            async with asyncio.timeout(2):
                seen = [await queue.get() for _ in range(3)]
            assert seen == [RESYNC, RESYNC, document]  # one resync per subscription made
            assert hub.ready.is_set()
    finally:
        async with asyncio.timeout(2):
            await hub.close()
    assert not hub.ready.is_set()
