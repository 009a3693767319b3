"""A process the local stack starts boosted (niceness -10) drops back to 0,
or to the niceness it is to run at (a background process: 5), every thread
of it, once it serves; and what its startup made is left out of later
garbage collections."""

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, sys, threading
    from tenx_common.runtime.server import settle_priority

    started = threading.Event()
    done = threading.Event()
    seen = {}

    def worker():
        seen["before"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        started.set()
        done.wait()
        seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    main_before = os.getpriority(os.PRIO_PROCESS, 0)
    settle_priority(int(sys.argv[1]))
    done.set()
    thread.join()
    print(main_before, seen["before"], os.getpriority(os.PRIO_PROCESS, 0), seen["after"])
    """
)


def niceness_seen(start: int, settle_at: int = 0) -> list[str]:
    """Started at niceness ``start``: the main thread's and another thread's
    niceness before settle_priority(settle_at), then after it."""
    return subprocess.run(
        ["nice", "-n", str(start), sys.executable, "-c", CHILD, str(settle_at)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative niceness needs root")
def test_a_boosted_process_returns_to_normal_priority_in_every_thread() -> None:
    assert niceness_seen(-10) == ["-10", "-10", "0", "0"]
    assert niceness_seen(-10, settle_at=5) == ["-10", "-10", "5", "5"]


def test_a_background_process_settles_at_its_niceness_in_every_thread() -> None:
    assert niceness_seen(0, settle_at=5) == ["0", "0", "5", "5"]
    assert niceness_seen(7, settle_at=5) == ["7", "7", "7", "7"]  # already nicer: left so


def test_a_process_at_normal_priority_is_left_alone() -> None:
    assert niceness_seen(5) == ["5", "5", "5", "5"]


def test_what_startup_made_is_left_out_of_later_collections() -> None:
    """Frozen, a full collection no longer walks the startup heap (the loop's
    stall while it ran); garbage made after it is still collected."""
    script = textwrap.dedent(
        """
        import gc, weakref
        from tenx_common.runtime.server import freeze_startup_heap

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        garbage_of_startup = cycle()
        freeze_startup_heap()
        print(garbage_of_startup() is None, gc.get_freeze_count() > 1000)
        later = cycle()
        gc.collect()
        print(later() is None)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "True", "True"]
