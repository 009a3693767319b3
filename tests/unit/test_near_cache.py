"""The near cache's rules, on a fake clock: copies expire, a drop wins over a
fill that began before it, and clearing stops every fill in flight."""

from tenx_common.data.cache import NearCache


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
