"""One transaction per command: the state change and its outbox rows commit together.

What a transaction only adds (its events' outbox rows, a saga it starts, an
order it places) is staged and written at the commit, with the NOTIFY of
every channel it wakes, in one statement: one multi-row INSERT per table,
each a data-modifying CTE (PostgreSQL runs each exactly once; foreign keys
between them are checked at the statement's end), under a SELECT of the
NOTIFYs. A placement's order, lines, stored answer, saga, OrderPlaced and
wake-ups are one round trip instead of five. The statement is built and
rendered to SQL once per shape (tables, columns, row counts), so that
SQLAlchemy caches its compiled form.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self

from sqlalchemy import ARRAY, Select, Table, Text, TextClause, bindparam, func, insert, select, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.interfaces import BindTyping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_common.data.outbox import outbox_row, wake_channel
from tenx_common.events import Event

# (table, the rows' columns, how many rows) for each table staged, in order
Shape = tuple[tuple[Table, tuple[str, ...], int], ...]
ROWS_PER_STATEMENT = 500


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
        self._staged: dict[Table, list[dict[str, Any]]] = {}  # rows written at the commit
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
        self.insert_at_commit(self._outbox, outbox_row(event, source=self._source))
        self.wake(wake_channel(self._outbox))  # its relays

    def insert_at_commit(self, table: Table, row: dict[str, Any]) -> None:
        """Insert ``row`` into ``table`` at the commit, in the statement that
        writes the events (rows of one table: the same columns)."""
        self._staged.setdefault(table, []).append(row)

    def wake(self, channel: str) -> None:
        """NOTIFY ``channel`` when this transaction commits (its listeners wake)."""
        self._wakes.add(channel)

    def take_staged(self) -> tuple[dict[Table, list[dict[str, Any]]], list[str]]:
        """What this transaction staged, for a caller that writes it itself in
        a statement of its own (the api's placement, one SQL function call):
        each table's rows and the channels to NOTIFY; forgotten here."""
        staged, channels = self._staged, sorted(self._wakes)
        self._staged, self._wakes = {}, set()
        return staged, channels

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
        if self._staged or self._wakes:
            connection = await self.session.connection()
            for statement, values in _writes(self._staged, sorted(self._wakes)):
                await connection.execute(statement, values)
            self._staged, self._wakes = {}, set()
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


def _writes(
    staged: dict[Table, list[dict[str, Any]]], channels: list[str]
) -> Iterator[tuple[TextClause, dict[str, Any]]]:
    """The statements that write ``staged`` and NOTIFY ``channels``: one,
    unless there are more than ``ROWS_PER_STATEMENT`` rows (a statement binds
    at most 32,767 values); then one per ``ROWS_PER_STATEMENT`` rows of a
    table, the NOTIFYs with the last."""
    pieces = [
        (table, rows[start : start + ROWS_PER_STATEMENT])
        for table, rows in staged.items()
        for start in range(0, len(rows), ROWS_PER_STATEMENT)
    ]
    if sum(len(rows) for _, rows in pieces) <= ROWS_PER_STATEMENT:
        parts = [pieces]
    else:
        parts = [[piece] for piece in pieces]
    for n, part in enumerate(parts, start=1):
        shape = tuple((table, tuple(rows[0]), len(rows)) for table, rows in part)
        values = {
            f"t{t}r{r}{column}": value
            for t, (_, rows) in enumerate(part)
            for r, row in enumerate(rows)
            for column, value in row.items()
        }
        yield _statement(shape), values | {"channels": channels if n == len(parts) else []}


# Renders the SQL with named parameters and no casts: text's parameters. The
# driver's dialect renders its own casts when it compiles the text.
_NAMED = PGDialect(paramstyle="named")  # type: ignore[no-untyped-call]
_NAMED.bind_typing = BindTyping.NONE


@functools.lru_cache(maxsize=256)
def _statement(shape: Shape) -> TextClause:
    """One statement for staged rows of ``shape``: each table's rows in one
    INSERT (a CTE), then ``pg_notify`` of each channel given.

    SQLAlchemy has no cache key for a multi-row INSERT, so it would compile
    the statement again at every commit, on every write request's path. Its
    SQL is rendered here once per shape instead and run as text with the same
    typed parameters, which SQLAlchemy caches."""
    statement = _built(shape)
    compiled = statement.compile(dialect=_NAMED)
    return text(str(compiled)).bindparams(
        *(
            bindparam(name, value=bind.value, type_=bind.type)
            for bind, name in compiled.bind_names.items()
        )
    )


def _built(shape: Shape) -> Select[Any]:
    """The statement of ``shape`` as SQLAlchemy builds it (``_statement`` renders it)."""
    inserts = [
        insert(table)
        .values(
            [
                {c: bindparam(f"t{t}r{r}{c}", type_=table.c[c].type) for c in columns}
                for r in range(count)
            ]
        )
        .cte(f"staged_{t}")
        for t, (table, columns, count) in enumerate(shape)
    ]
    channels = (
        func.unnest(bindparam("channels", type_=ARRAY(Text))).table_valued("c").render_derived()
    )
    return select(func.pg_notify(channels.c.c, "")).select_from(channels).add_cte(*inserts)
