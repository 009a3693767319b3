"""The saga runner's recording on the real api database: the transitions that
finish together are recorded in one transaction, their effects written as a
set, each still fenced on its own claim and under its own attempt's trace, and
a state change that fails is recorded on its own without holding the others
back."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from tenx_api.adapters.orm import outbox, saga_steps, sagas
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event
from tenx_common.events.catalog_products import StockChangedV1
from tenx_common.work.saga import BatchEffect, Effect, Saga, SagaRunner, SagaStatus, Transition

KIND = "recording-test"  # a kind no worker runs: these sagas are never due


@pytest.fixture
async def engine(api_settings: ApiSettings) -> AsyncIterator[AsyncEngine]:
    engine = primary_engine(api_settings)
    yield engine
    async with engine.begin() as conn:
        ids = select(sagas.c.id).where(sagas.c.kind == KIND)
        await conn.execute(delete(saga_steps).where(saga_steps.c.saga_id.in_(ids)))
        await conn.execute(delete(sagas).where(sagas.c.kind == KIND))
    await engine.dispose()


class Runner:
    """A runner on the api's tables that counts its recording transactions."""

    def __init__(
        self, engine: AsyncEngine, effects: Mapping[str, BatchEffect] | None = None
    ) -> None:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.transactions = 0

        def uow() -> UnitOfWork:
            self.transactions += 1
            return UnitOfWork(sessions, outbox=outbox, source="test")

        self.runner = SagaRunner(
            engine=engine,
            uow=uow,
            sagas=sagas,
            steps_log=saga_steps,
            steps={},
            lease_s=30.0,
            tracer=trace.get_tracer(__name__),
            effects=effects or {},
        )

    async def claimed(self, engine: AsyncEngine, count: int) -> list[Saga]:
        """``count`` sagas as a runner holds them after claiming (attempt 1), never due."""
        now = datetime.now(UTC)
        found = [
            Saga(
                id=uuid.uuid4(),
                kind=KIND,
                status=SagaStatus.RUNNING,
                step="pay",
                attempts=1,
                reason=None,
            )
            for _ in range(count)
        ]
        async with engine.begin() as conn:
            await conn.execute(
                insert(sagas),
                [
                    {
                        "id": saga.id,
                        "kind": KIND,
                        "status": SagaStatus.RUNNING,
                        "step": "pay",
                        "attempts": 1,
                        "trace": {},
                        "next_attempt_at": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for saga in found
                ],
            )
        return found


async def statuses(engine: AsyncEngine, found: list[Saga]) -> dict[uuid.UUID, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(sagas.c.id, sagas.c.status).where(sagas.c.id.in_([s.id for s in found]))
        )
        return {row.id: row.status for row in rows}


async def logged(engine: AsyncEngine, found: list[Saga]) -> int:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(saga_steps.c.id).where(saga_steps.c.saga_id.in_([s.id for s in found]))
        )
        return len(rows.all())


async def only_the_middle_one_failed(
    engine: AsyncEngine, found: list[Saga], recorded: list[Any]
) -> None:
    """The first and last of three recorded; the middle one's failure raised to
    its caller, and its saga left as it was (its lease ends; the step runs again)."""
    assert recorded[0] is True
    assert recorded[2] is True
    assert isinstance(recorded[1], RuntimeError)
    assert await statuses(engine, found) == {
        found[0].id: SagaStatus.COMPLETED,
        found[1].id: SagaStatus.RUNNING,
        found[2].id: SagaStatus.COMPLETED,
    }


def done() -> Transition:
    return Transition(outcome="approved", status=SagaStatus.COMPLETED, step="done")


async def test_transitions_that_finish_together_are_recorded_in_one_transaction(
    engine: AsyncEngine,
) -> None:
    test = Runner(engine)
    found = await test.claimed(engine, 5)
    started = datetime.now(UTC)

    recorded = await asyncio.gather(
        *(test.runner.record(saga, done(), started=started) for saga in found)
    )

    assert recorded == [True] * 5
    assert test.transactions == 1
    assert set((await statuses(engine, found)).values()) == {SagaStatus.COMPLETED}
    assert await logged(engine, found) == 5


async def test_a_saga_that_moved_on_is_dropped_and_the_rest_of_its_batch_recorded(
    engine: AsyncEngine,
) -> None:
    test = Runner(engine)
    found = await test.claimed(engine, 3)
    stale = Saga(
        id=found[1].id, kind=KIND, status=SagaStatus.RUNNING, step="pay", attempts=2, reason=None
    )  # another runner's claim: the row is at attempt 1
    started = datetime.now(UTC)

    recorded = await asyncio.gather(
        *(test.runner.record(saga, done(), started=started) for saga in (found[0], stale, found[2]))
    )

    assert recorded == [True, False, True]
    assert await statuses(engine, found) == {
        found[0].id: SagaStatus.COMPLETED,
        found[1].id: SagaStatus.RUNNING,
        found[2].id: SagaStatus.COMPLETED,
    }
    assert await logged(engine, found) == 2


async def test_each_transition_is_applied_under_its_own_attempts_trace(
    engine: AsyncEngine,
) -> None:
    test = Runner(engine)
    found = await test.claimed(engine, 3)
    seen: dict[uuid.UUID, str] = {}

    def traced(saga: Saga) -> Transition:
        async def apply(uow: UnitOfWork) -> None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # what an event staged here would carry
            seen[saga.id] = carrier["traceparent"]

        return Transition(outcome="approved", status=SagaStatus.COMPLETED, step="done", apply=apply)

    async def attempt(saga: Saga, trace_id: int) -> bool:
        span = NonRecordingSpan(
            SpanContext(trace_id, 1, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await test.runner.record(saga, traced(saga), started=datetime.now(UTC))
        finally:
            otel_context.detach(token)

    recorded = await asyncio.gather(*(attempt(s, n + 1) for n, s in enumerate(found)))

    assert recorded == [True] * 3
    assert test.transactions == 1
    assert {saga.id: seen[saga.id].split("-")[1] for saga in found} == {
        saga.id: f"{n + 1:032x}" for n, saga in enumerate(found)
    }


async def test_a_state_change_that_fails_is_recorded_alone_and_the_others_stand(
    engine: AsyncEngine,
) -> None:
    test = Runner(engine)
    found = await test.claimed(engine, 3)

    async def broken(uow: UnitOfWork) -> None:
        raise RuntimeError("the state change failed")

    transitions = [
        done(),
        Transition(outcome="approved", status=SagaStatus.COMPLETED, step="done", apply=broken),
        done(),
    ]
    started = datetime.now(UTC)

    recorded = await asyncio.gather(
        *(
            test.runner.record(saga, transition, started=started)
            for saga, transition in zip(found, transitions, strict=True)
        ),
        return_exceptions=True,
    )

    await only_the_middle_one_failed(engine, found, recorded)
    assert test.transactions == 4  # the batch (rolled back), then each on its own


def under_trace(trace_id: int) -> otel_context.Context:
    span = NonRecordingSpan(
        SpanContext(trace_id, 1, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    return trace.set_span_in_context(span)


async def staged(engine: AsyncEngine, products: list[uuid.UUID]) -> dict[str, str]:
    """The traceparent of each product's staged event, by product."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.key, outbox.c.headers).where(outbox.c.key.in_(map(str, products)))
        )
        return {row.key: row.headers.get("traceparent", "") for row in rows}


async def test_an_effect_is_written_once_for_its_batch_and_each_event_under_its_trace(
    engine: AsyncEngine,
) -> None:
    calls: list[list[uuid.UUID]] = []

    async def note(uow: UnitOfWork, products: Sequence[uuid.UUID]) -> list[list[Event]]:
        calls.append(list(products))
        return [[StockChangedV1(product_id=p, version=1, stock=1)] for p in products]

    test = Runner(engine, effects={"note": note})
    found = await test.claimed(engine, 3)
    products = [uuid.uuid4() for _ in found]

    async def attempt(saga: Saga, product: uuid.UUID, trace_id: int) -> bool:
        token = otel_context.attach(under_trace(trace_id))
        try:
            transition = Transition(
                outcome="approved",
                status=SagaStatus.COMPLETED,
                step="done",
                effect=Effect("note", product),
            )
            return await test.runner.record(saga, transition, started=datetime.now(UTC))
        finally:
            otel_context.detach(token)

    recorded = await asyncio.gather(
        *(attempt(s, p, n + 1) for n, (s, p) in enumerate(zip(found, products, strict=True)))
    )

    assert recorded == [True] * 3
    assert test.transactions == 1
    assert calls == [products]
    traces = {key: parent.split("-")[1] for key, parent in (await staged(engine, products)).items()}
    assert traces == {str(p): f"{n + 1:032x}" for n, p in enumerate(products)}


async def test_an_effect_that_fails_for_one_item_leaves_the_others_recorded(
    engine: AsyncEngine,
) -> None:
    bad = uuid.uuid4()

    async def note(uow: UnitOfWork, products: Sequence[uuid.UUID]) -> list[list[Event]]:
        if bad in products:
            raise RuntimeError("this product's change fails")
        return [[StockChangedV1(product_id=p, version=1, stock=1)] for p in products]

    test = Runner(engine, effects={"note": note})
    found = await test.claimed(engine, 3)
    products = [uuid.uuid4(), bad, uuid.uuid4()]
    started = datetime.now(UTC)

    recorded = await asyncio.gather(
        *(
            test.runner.record(
                saga,
                Transition(
                    outcome="approved",
                    status=SagaStatus.COMPLETED,
                    step="done",
                    effect=Effect("note", product),
                ),
                started=started,
            )
            for saga, product in zip(found, products, strict=True)
        ),
        return_exceptions=True,
    )

    # as if each had been recorded on its own: the failed one unchanged, unlogged
    await only_the_middle_one_failed(engine, found, recorded)
    assert await logged(engine, found) == 2
    assert set(await staged(engine, products)) == {str(products[0]), str(products[2])}
    assert test.transactions == 4  # the batch (rolled back), then each on its own
