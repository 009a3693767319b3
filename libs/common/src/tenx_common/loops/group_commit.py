"""Group commit: items that arrive while a batch is being written are written
together in the next batch, so a busy writer makes one round trip per batch
and an idle one writes at once. When a batch fails, each of its items is
written on its own, so one that cannot be written does not hold the others
back. The leased-work engine records outcomes this way; the session router
marks the writes that finish together in one round trip, and reads one WAL
position for every reader that asked before the read began."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

D = TypeVar("D")  # an item waiting to be written

BATCH = 64  # items written in one batch, at most


class GroupCommit(Generic[D]):
    """Records items in batches: ``submit`` waits for its item's batch."""

    def __init__(
        self,
        record_batch: Callable[[Sequence[D]], Awaitable[list[bool]]],
        *,
        batch_size: int = BATCH,
    ) -> None:
        # One transaction for the batch, each item fenced: True when recorded,
        # False when fenced off; raising rolls the whole batch back.
        self.record_batch = record_batch
        self.batch_size = batch_size
        self._queue: list[tuple[D, asyncio.Future[bool]]] = []
        self._recorder: asyncio.Task[None] | None = None

    async def submit(self, item: D) -> bool:
        """Record ``item`` with whatever else waits; False when it was fenced off."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_queued())
        return await future

    async def _record_queued(self) -> None:
        while self._queue:
            batch = self._queue[: self.batch_size]
            del self._queue[: self.batch_size]
            try:
                results = await self.record_batch([item for item, _ in batch])
            except Exception:  # one item's change failed: each on its own
                for item, future in batch:
                    try:
                        _settle(future, (await self.record_batch([item]))[0])
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result)


def _settle(future: "asyncio.Future[bool]", result: bool) -> None:
    if not future.done():  # its waiter may have been cancelled (a shutdown)
        future.set_result(result)
