"""Background jobs that repeat while a service runs (retention sweeps and the like)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tenx_common.loops.supervised import log_failure, pause

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def every(
    interval_s: float, job: Callable[[], Awaitable[object]], *, name: str
) -> AsyncIterator[None]:
    """Run ``job`` every ``interval_s`` seconds until the block exits; a failing
    run is logged and the next one runs on time."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception as exc:
                log_failure(exc, f"periodic job {name} failed", logger=log)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        await stop_task(task)


async def repeat(
    job: Callable[[], Awaitable[object]],
    *,
    interval_s: float,
    stopping: asyncio.Event,
    what: str,
    logger: logging.Logger = log,
) -> None:
    """Run ``job`` now and every ``interval_s`` seconds after, until ``stopping``
    is set; a failing run is logged (``what`` says what failed) and the next
    one runs on time."""
    while not stopping.is_set():
        try:
            await job()
        except Exception as exc:
            log_failure(exc, what, logger=logger)
        await pause(stopping, interval_s)


async def stop_task(task: "asyncio.Task[Any]", *, timeout_s: float = 5.0) -> None:
    """Cancel ``task`` and wait for it, at most ``timeout_s``: a library that
    swallows the cancellation (redis-py's pub/sub read, a pool's ping) must not
    hold a shutdown forever. The task's own stop flag ends it later."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("task %s did not stop within %.0f s; leaving it", task.get_name(), timeout_s)
        return
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
