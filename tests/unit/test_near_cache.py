"""The near cache's rules, on a fake clock: copies expire, a drop wins over a
fill that began before it, and clearing stops every fill in flight; and its
listener, on a fake Redis: a lost subscription drops every copy and is made
again."""

import asyncio
import importlib

import pytest

from tenx_common.data.cache import NearCache
from tests.support.fake_redis import FakeRedis

# The module (``tenx_common.loops`` names its function ``supervised`` too).
supervised_module = importlib.import_module("tenx_common.loops.supervised")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_copy_lives_at_most_its_ttl() -> None:
    clock = Clock()
    near = NearCache(channel="c", ttl_s=5, clock=clock)
    near.put("k", b"v", version=near.version("k"))
    assert near.get("k") == b"v"
    clock.now += 5.1
    assert near.get("k") is None


def test_a_fill_that_began_before_a_drop_is_not_stored() -> None:
    near = NearCache(channel="c")
    version = near.version("k")  # the fill starts, reads the old value...
    near.drop(["k"])  # ...the change's invalidation arrives...
    near.put("k", b"old", version=version)  # ...and the old value is refused
    assert near.get("k") is None
    near.put("k", b"new", version=near.version("k"))
    assert near.get("k") == b"new"
    near.drop(["k", "other"])
    assert near.get("k") is None


def test_clearing_drops_everything_and_every_fill_in_flight() -> None:
    near = NearCache(channel="c", max_entries=3)
    in_flight = near.version("late")
    for key in ("a", "b", "c"):
        near.put(key, b"x", version=near.version(key))
    near.put("d", b"x", version=near.version("d"))  # full: cleared first, then stored
    assert near.get("a") is None
    assert near.get("d") == b"x"
    near.clear()
    near.put("late", b"x", version=in_flight)
    assert near.get("late") is None
    assert near.get("d") is None


async def test_a_lost_subscription_drops_every_copy_and_is_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervised_module, "pause", lambda stopping, seconds: asyncio.sleep(0))
    near = NearCache(channel="c")
    redis = FakeRedis([("c", b"k2")])
    near.put("k1", b"v", version=near.version("k1"))
    listening = asyncio.create_task(near.listen(redis))  # type: ignore[arg-type]
    async with asyncio.timeout(2):
        await redis.delivered.wait()
    assert redis.subscriptions == 2
    assert near.get("k1") is None  # dropped with the lost subscription
    near.put("k3", b"v", version=near.version("k3"))
    near.stopping.set()
    async with asyncio.timeout(2):
        await listening  # ends once stopping is set, without a cancel
    assert near.get("k3") == b"v"
    assert near.version("k2")[1] == 1  # the message after the new subscription: dropped
