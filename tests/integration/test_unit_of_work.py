"""The unit of work on the real database: the events a transaction stages are
written at its commit in one statement with its NOTIFYs, in the order they
were staged, each with the trace context current when it was staged; a
transaction that does not commit writes none. Rows past what one statement
binds are written in more statements, the NOTIFY with the last."""

import asyncio
import uuid
from typing import Any

import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import MetaData, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import quoted_name

from tenx_api.adapters.orm import outbox
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_common.data.outbox import wake_channel
from tenx_common.data.uow import UnitOfWork
from tenx_common.events.catalog_products import StockChangedV1


async def outbox_rows(sessions: async_sessionmaker[AsyncSession], product: uuid.UUID) -> list[Any]:
    """The outbox rows of ``product``'s events, in the order they were written."""
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(outbox.c.payload, outbox.c.headers)
                    .where(outbox.c.key == str(product))
                    .order_by(outbox.c.occurred_at, outbox.c.id)
                )
            ).all()
        )


async def test_staged_events_are_written_at_commit_in_one_statement_in_order(
    api_settings: ApiSettings,
) -> None:
    engine = primary_engine(api_settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    tracer = TracerProvider().get_tracer("test")
    product = uuid.uuid4()
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO outbox" in statement:
            inserts.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    traces = []
    try:
        async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
            for version in (1, 2, 3):
                with tracer.start_as_current_span(f"change {version}") as span:
                    traces.append(format(span.get_span_context().trace_id, "032x"))
                    await uow.publish(StockChangedV1(product_id=product, version=version, stock=1))
            assert inserts == []  # staged, not written yet
            await uow.commit()
        [written] = inserts
        assert "pg_notify" in written  # the relays' wake-up, in the same statement

        async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
            await uow.publish(StockChangedV1(product_id=product, version=4, stock=1))
            # not committed: nothing is written

        rows = await outbox_rows(sessions, product)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        await engine.dispose()
    assert [row.payload["data"]["version"] for row in rows] == [1, 2, 3]
    assert [row.headers["traceparent"].split("-")[1] for row in rows] == traces


async def test_more_rows_than_one_statement_binds_are_written_in_several(
    api_settings: ApiSettings,
) -> None:
    engine = primary_engine(api_settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    product, channel = uuid.uuid4(), f"it_uow_{uuid.uuid4().hex[:12]}"
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO outbox" in statement or "pg_notify" in statement:
            statements.append(statement)

    listener = await asyncpg.connect(
        api_settings.session_url()
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(channel, lambda *args: heard.put_nowait(args[2]))
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
            for version in range(1, 1101):  # 7 values a row: 7,700 in all
                await uow.publish(StockChangedV1(product_id=product, version=version, stock=1))
            uow.wake(channel)
            await uow.commit()
        assert await asyncio.wait_for(heard.get(), timeout=10) == channel
        rows = await outbox_rows(sessions, product)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        await listener.close()
        await engine.dispose()
    assert [row.payload["data"]["version"] for row in rows] == list(range(1, 1101))
    assert [s.count("), (") + 1 for s in statements] == [500, 500, 100]
    assert heard.empty()  # one NOTIFY, sent once


async def test_a_second_outbox_in_the_database_wakes_only_its_own_relays(
    api_settings: ApiSettings,
) -> None:
    """A benchmark's outbox beside the api's: its writes must not wake the api's relay."""
    engine = primary_engine(api_settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    other = outbox.to_metadata(MetaData(), name=f"it_outbox_{uuid.uuid4().hex[:12]}")
    for index in other.indexes:  # named apart from the api's own
        index.name = quoted_name(f"{index.name}_{other.name}", quote=None)
    notified: list[list[str]] = []

    def channels(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "pg_notify" in statement:
            notified.append(next(p for p in parameters if isinstance(p, list)))

    async with engine.begin() as conn:
        await conn.run_sync(other.create)
    event.listen(engine.sync_engine, "before_cursor_execute", channels)
    try:
        async with UnitOfWork(sessions, outbox=other, source="/tenx/test") as uow:
            await uow.publish(StockChangedV1(product_id=uuid.uuid4(), version=1, stock=1))
            await uow.commit()
        async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
            await uow.publish(StockChangedV1(product_id=uuid.uuid4(), version=1, stock=1))
            await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", channels)
        async with engine.begin() as conn:
            await conn.run_sync(other.drop)
        await engine.dispose()
    assert notified == [[other.name], ["outbox"]]
    assert wake_channel(other) == other.name
    assert wake_channel(outbox) == "outbox"
