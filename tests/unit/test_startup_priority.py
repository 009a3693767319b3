"""A process the local stack starts boosted (niceness -10) drops back to 0,
every thread of it, once it serves."""

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, threading
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
    settle_priority()
    done.set()
    thread.join()
    print(main_before, seen["before"], os.getpriority(os.PRIO_PROCESS, 0), seen["after"])
    """
)


def niceness_seen(start: int) -> list[str]:
    """Started at niceness ``start``: the main thread's and another thread's
    niceness before settle_priority, then after it."""
    return subprocess.run(
        ["nice", "-n", str(start), sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative niceness needs root")
def test_a_boosted_process_returns_to_normal_priority_in_every_thread() -> None:
    assert niceness_seen(-10) == ["-10", "-10", "0", "0"]


def test_a_process_at_normal_priority_is_left_alone() -> None:
    assert niceness_seen(5) == ["5", "5", "5", "5"]
