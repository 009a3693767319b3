"""Loops that restart: a failure is logged (an outage in one line, a bug with
its trace), waited out, and the loop runs again until it is stopped."""

import asyncio
import logging

import pytest
import redis.exceptions

from tenx_common.loops import repeat, supervised


async def test_a_failing_body_is_restarted_after_its_pause_until_stopped() -> None:
    stopping = asyncio.Event()
    runs: list[int] = []
    pauses: list[int] = []

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            stopping.set()
            return
        raise RuntimeError("a bug")

    def pause_s() -> float:
        pauses.append(len(runs))
        return 0.0

    await supervised(body, stopping=stopping, what="test loop failed", pause_s=pause_s)

    assert runs == [0, 1, 2]
    assert pauses == [1, 2]


async def test_an_outage_is_one_line_and_a_bug_carries_its_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    errors: list[Exception] = [redis.exceptions.ConnectionError("refused"), KeyError("x")]

    async def body() -> None:
        if not errors:
            stopping.set()
            return
        raise errors.pop(0)

    with caplog.at_level(logging.WARNING):
        await supervised(body, stopping=stopping, what="test loop failed", pause_s=lambda: 0.0)

    outage, bug = caplog.records
    assert outage.levelno == logging.WARNING
    assert outage.exc_info is None
    assert outage.getMessage().startswith("test loop failed: redis unavailable: ConnectionError")
    assert bug.levelno == logging.ERROR
    assert bug.exc_info is not None


async def test_stopping_cuts_the_pause_short() -> None:
    stopping = asyncio.Event()

    async def body() -> None:
        asyncio.get_running_loop().call_later(0.01, stopping.set)
        raise RuntimeError("a bug")

    async with asyncio.timeout(1):
        await supervised(body, stopping=stopping, what="test loop failed", pause_s=lambda: 60.0)


async def test_a_repeated_job_runs_again_after_a_failure() -> None:
    stopping = asyncio.Event()
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        if len(runs) == 3:
            stopping.set()
        raise RuntimeError("a bug")

    async with asyncio.timeout(1):
        await repeat(job, interval_s=0.0, stopping=stopping, what="test job failed")

    assert len(runs) == 3
