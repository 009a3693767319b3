"""Waking background loops (relays, saga runners) at once instead of on their next poll."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine


@contextlib.asynccontextmanager
async def listening(engine: AsyncEngine, channel: str, wake: asyncio.Event) -> AsyncIterator[None]:
    """Set ``wake`` on every PostgreSQL NOTIFY on ``channel`` while the block runs.
    (A NOTIFY sent in a transaction is delivered when it commits.)"""
    async with engine.connect() as listener:
        raw = (await listener.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener(channel, lambda *_: wake.set())
        yield


async def nap(wake: asyncio.Event, stopping: asyncio.Event, *, timeout_s: float) -> None:
    """Sleep until ``wake`` or ``stopping`` is set, or ``timeout_s`` has passed."""
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
