"""One transaction per command: the state change and its outbox rows commit together."""

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_common.data.outbox import CHANNEL, outbox_row, write_events
from tenx_common.events import Event


class UnitOfWork:
    session: AsyncSession

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], *, outbox: Table, source: str
    ) -> None:
        self._session_factory = session_factory
        self._outbox = outbox
        self._source = source

    async def __aenter__(self) -> Self:
        self.session = self._session_factory()
        self._wakes: set[str] = set()
        self._events: list[dict[str, Any]] = []  # outbox rows, written at the commit
        self._after_commit: list[Callable[[], Awaitable[object]]] = []
        self._together: list[Callable[[], Awaitable[object]]] = []
        # The id of the event whose effect this is (set by the consumer for each
        # handler it calls), for records kept per event, such as notify's deliveries.
        self.cause: str | None = None
        self.committed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Closing rolls back whatever was not committed; loaded objects stay
        # readable (detached, not expired) for the caller.
        await self.session.close()

    async def publish(self, event: Event) -> None:
        """Stage ``event`` in this transaction's outbox, under the trace context
        current now. The staged events are written together at the commit, in
        one statement, in the order they were staged."""
        self._events.append(outbox_row(event, source=self._source))
        self.wake(CHANNEL)  # the relays

    def wake(self, channel: str) -> None:
        """NOTIFY ``channel`` when this transaction commits (its listeners wake)."""
        self._wakes.add(channel)

    def after_commit(
        self, action: Callable[[], Awaitable[object]], *, together: bool = False
    ) -> None:
        """Run ``action`` once this transaction has committed (cache invalidation),
        after the actions registered before it; or, ``together``, at the same
        time as the other such actions, once those in order have run (a batch's
        read-your-writes marks, which ``SessionRouter.record_write`` then
        writes in one round trip)."""
        (self._together if together else self._after_commit).append(action)

    async def commit(self) -> None:
        if self._events:
            await write_events(await self.session.connection(), self._outbox, self._events)
            self._events = []
        if self._wakes:  # one statement for every channel (delivered at the commit)
            await self.session.execute(
                text("SELECT pg_notify(c, '') FROM unnest(CAST(:channels AS text[])) c"),
                {"channels": sorted(self._wakes)},
            )
            self._wakes.clear()
        await self.session.commit()
        self.committed = True
        for action in self._after_commit:
            await action()
        outcomes = await asyncio.gather(
            *(action() for action in self._together), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
