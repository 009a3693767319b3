"""One transaction per command: state changes and outbox rows commit together."""

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_auth.adapters.orm import outbox
from tenx_common.events import Event
from tenx_common.outbox import add_event

EVENT_SOURCE = "/tenx/auth"


class UnitOfWork:
    session: AsyncSession

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> Self:
        self.session = self._session_factory()
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
        await add_event(self.session, outbox, event, source=EVENT_SOURCE)

    async def commit(self) -> None:
        await self.session.commit()
