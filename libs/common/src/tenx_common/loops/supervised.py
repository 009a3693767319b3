"""Loops that survive their failures: logged, waited out, run again."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tenx_common.web.outages import find_outage

log = logging.getLogger(__name__)


async def supervised(
    body: Callable[[], Awaitable[object]],
    *,
    stopping: asyncio.Event,
    what: str,
    pause_s: Callable[[], float] = lambda: 1.0,
    logger: logging.Logger = log,
) -> None:
    """Run ``body`` again and again until ``stopping`` is set. When it raises,
    the failure is logged (``what`` says what failed) and the next run starts
    after ``pause_s()`` seconds, or at once when ``stopping`` is set meanwhile."""
    while not stopping.is_set():
        try:
            await body()
        except Exception as exc:
            log_failure(exc, what, logger=logger)
            await pause(stopping, pause_s())


def log_failure(exc: BaseException, what: str, *, logger: logging.Logger = log) -> None:
    """A dependency that is down in one warning line (it says all there is to
    say, and an outage repeats it on every restart); anything else, a bug, with
    its trace."""
    outage = find_outage(exc)
    if outage is None:
        logger.error(what, exc_info=exc)
    else:
        logger.warning("%s: %s unavailable: %s", what, outage.dependency, outage.summary())


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stopping`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()
