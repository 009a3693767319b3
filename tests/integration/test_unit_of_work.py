"""The unit of work on the real database: the events a transaction stages are
written at its commit in one statement, in the order they were staged, each
with the trace context current when it was staged; a transaction that does
not commit writes none."""

import uuid
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from tenx_api.adapters.orm import outbox
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_common.data.uow import UnitOfWork
from tenx_common.events.catalog_products import StockChangedV1


async def test_staged_events_are_written_at_commit_in_one_statement_in_order(
    api_settings: ApiSettings,
) -> None:
    engine = primary_engine(api_settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    tracer = TracerProvider().get_tracer("test")
    product = uuid.uuid4()
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
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
        assert len(inserts) == 1

        async with UnitOfWork(sessions, outbox=outbox, source="/tenx/test") as uow:
            await uow.publish(StockChangedV1(product_id=product, version=4, stock=1))
            # not committed: nothing is written

        async with sessions() as session:
            rows = (
                await session.execute(
                    select(outbox.c.payload, outbox.c.headers)
                    .where(outbox.c.key == str(product))
                    .order_by(outbox.c.occurred_at, outbox.c.id)
                )
            ).all()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        await engine.dispose()
    assert [row.payload["data"]["version"] for row in rows] == [1, 2, 3]
    assert [row.headers["traceparent"].split("-")[1] for row in rows] == traces
