"""The order saga, orchestrated here (PLATFORM.md, Sagas).

It starts in the transaction that places the order (stock reserved, OrderPlaced
staged) and runs in the worker process:

    authorize_payment --approved--> completed: order confirmed, OrderConfirmed
        | declined, or no answer / an error after ``payment_max_attempts``
        v
    void_payment --> release_stock --> compensated: stock back, OrderCancelled{reason}

Every call to the provider carries the order id as its idempotency key, so a
step run again (a retry, a restarted worker) never charges twice; a void that
comes before a late authorization makes the provider refuse that one. A
customer who cancels a pending or confirmed order gets the stock back at once
(``orders.cancel_order``) and moves the saga to ``void_payment``; a step that
was running then has its result dropped (see ``tenx_common.work.saga``).

An authorization may take ``payment_timeout_s`` (2 s). A timeout or an error is
tried again after 0.5 s, then 1 s (``payment_retry_backoff_s``, doubling), up
to ``payment_max_attempts`` (3), then compensated as ``payment_timeout`` or
``payment_failed``. A decline is compensated at once (``payment_declined``), and
so is a key the provider holds for another payment (``payment_failed``). An
attempt's lease is the payment timeout and 10 s. A void that fails runs again
(the engine's backoff, 1 s doubling to 30 s) until it succeeds.

The api does not consume its own OrderPlaced to start the saga: the saga row
written in the placement's transaction gives the same guarantee without a
round trip through Kafka, and lets a customer's cancel lock the saga.
Operators see the sagas at ``GET /v1/admin/sagas?status=`` (newest first) and
one with its logged steps at ``GET /v1/admin/sagas/{id}``.
"""

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tenx_api.adapters import statements as sql
from tenx_api.adapters.orm import saga_steps, sagas
from tenx_api.domain.orders import OrderStatus
from tenx_api.domain.payments import IdempotencyConflictError
from tenx_api.service_layer.deps import ApiDeps
from tenx_api.service_layer.orders import release_order
from tenx_common.data import UnitOfWork
from tenx_common.events import Event
from tenx_common.events.orders_orders import OrderConfirmed
from tenx_common.loops import backoff_s
from tenx_common.web import ProblemError, decode_cursor, encode_cursor
from tenx_common.work import (
    BatchEffect,
    Effect,
    Saga,
    SagaStatus,
    Step,
    Transition,
    saga_view,
    step_view,
)

KIND = "order"
AUTHORIZE = "authorize_payment"
VOID = "void_payment"
RELEASE = "release_stock"
DONE = "done"
CONFIRM = "confirm_order"  # the effect of an approved authorization


def effects(deps: ApiDeps) -> dict[str, BatchEffect]:
    """The state changes the runner writes for a batch of transitions at once."""
    return {CONFIRM: lambda uow, confirmations: confirm_orders(uow, confirmations, deps=deps)}


def steps(deps: ApiDeps) -> dict[tuple[str, str], Step]:
    def bind(step: Callable[[Saga, ApiDeps], Awaitable[Transition]]) -> Step:
        return lambda saga: step(saga, deps)

    return {
        (KIND, AUTHORIZE): bind(authorize_payment),
        (KIND, VOID): bind(void_payment),
        (KIND, RELEASE): bind(release_stock),
    }


async def load_orders(conn: AsyncConnection, sagas: Sequence[Saga]) -> dict[uuid.UUID, Any]:
    """The orders of the claimed sagas about to authorize, in one statement in
    the claim's transaction (the saga's id is its order's)."""
    ids = [saga.id for saga in sagas if saga.step == AUTHORIZE]
    if not ids:
        return {}
    return await sql.orders(conn, ids)


def lease_s(deps: ApiDeps) -> float:
    """An attempt's lease: the provider's timeout and a margin."""
    return deps.settings.payment_timeout_s + 10.0


async def authorize_payment(saga: Saga, deps: ApiDeps) -> Transition:
    settings = deps.settings
    order = saga.context  # read with the claim (load_orders)
    if order is None:
        async with deps.uow() as uow:
            order = await sql.order(await uow.session.connection(), saga.id)
    if order is None or order.status != OrderStatus.PENDING:
        return Transition(
            outcome="error",
            status=SagaStatus.FAILED,
            step=AUTHORIZE,
            detail=f"order is {order.status if order else 'missing'}, not pending",
        )
    try:
        async with asyncio.timeout(settings.payment_timeout_s):
            authorization = await deps.payments.authorize(
                idempotency_key=str(order.id),
                amount_cents=order.total_cents,
                currency=order.currency,
                payment_method=order.payment_method,
            )
    except IdempotencyConflictError:
        return _compensate("conflict", "payment_failed", "the provider holds another payment")
    except TimeoutError:
        outcome, detail = "timeout", f"no answer in {settings.payment_timeout_s:g} s"
    except Exception as exc:  # the provider is down or failing: retried like a timeout
        outcome, detail = "error", f"{type(exc).__name__}: {exc}"[:2000]
    else:
        if not authorization.approved:
            return _compensate("declined", "payment_declined", authorization.decline_code)
        return Transition(
            outcome="approved",
            status=SagaStatus.COMPLETED,
            step=DONE,
            detail=f"payment {authorization.id}",
            effect=Effect(CONFIRM, (order.id, authorization.id)),
        )
    if saga.attempts < settings.payment_max_attempts:
        return Transition(
            outcome=outcome,
            status=SagaStatus.RUNNING,
            step=AUTHORIZE,
            retry_in_s=backoff_s(saga.attempts, base_s=settings.payment_retry_backoff_s),
            detail=detail,
        )
    reason = "payment_timeout" if outcome == "timeout" else "payment_failed"
    return _compensate(outcome, reason, detail)


def _compensate(outcome: str, reason: str, detail: str | None) -> Transition:
    return Transition(
        outcome=outcome, status=SagaStatus.COMPENSATING, step=VOID, reason=reason, detail=detail
    )


async def confirm_orders(
    uow: UnitOfWork, confirmations: Sequence[tuple[uuid.UUID, str]], *, deps: ApiDeps
) -> list[list[Event]]:
    """Confirm the orders of ``confirmations`` (order id, payment id) in one
    statement; each one's OrderConfirmed, in their order. An order that is not
    there fails the batch (the runner then records each transition alone)."""
    db = await uow.session.connection()
    ids = [order_id for order_id, _ in confirmations]
    confirmed = await sql.confirm_orders(db, ids, now=datetime.now(UTC))
    if missing := set(ids) - confirmed.keys():
        raise LookupError(f"no such orders to confirm: {sorted(map(str, missing))}")
    for user in sorted({str(row.user_id) for row in confirmed.values()}):
        uow.after_commit(functools.partial(deps.committed, user), together=True)
    return [
        [
            OrderConfirmed(
                order_id=order_id,
                user_id=confirmed[order_id].user_id,
                total_cents=confirmed[order_id].total_cents,
                currency=confirmed[order_id].currency,
                payment_id=payment_id,
            )
        ]
        for order_id, payment_id in confirmations
    ]


async def void_payment(saga: Saga, deps: ApiDeps) -> Transition:
    """Void whatever the provider holds under the order id (also nothing: then
    a late authorization is refused). Retried until it succeeds."""
    async with asyncio.timeout(deps.settings.payment_timeout_s):
        await deps.payments.void(idempotency_key=str(saga.id))
    return Transition(outcome="voided", status=SagaStatus.COMPENSATING, step=RELEASE)


async def release_stock(saga: Saga, deps: ApiDeps) -> Transition:
    async def apply(uow: UnitOfWork) -> None:
        db = await uow.session.connection()
        order = await sql.order(db, saga.id, lock=True)
        assert order is not None
        items = await sql.order_items(db, saga.id)
        keys = await release_order(uow, order, items, reason=saga.reason or "payment_failed")
        user = str(order.user_id)
        uow.after_commit(lambda: deps.committed(user, *keys), together=True)

    return Transition(outcome="released", status=SagaStatus.COMPENSATED, step=DONE, apply=apply)


# -- the operators' view (GET /v1/admin/sagas) ------------------------------------


async def list_sagas(
    *, status: str | None, limit: int, cursor: str | None, deps: ApiDeps
) -> tuple[list[dict[str, Any]], str | None]:
    query = select(sagas).order_by(sagas.c.created_at.desc(), sagas.c.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(sagas.c.status == status)
    if cursor is not None:
        created_at, last_id = decode_cursor(
            cursor, lambda p: (datetime.fromisoformat(p["t"]), uuid.UUID(p["id"]))
        )
        query = query.where(tuple_(sagas.c.created_at, sagas.c.id) < tuple_(created_at, last_id))

    async def run(session: AsyncSession) -> list[Any]:
        return list((await session.execute(query)).all())

    rows = await deps.sessions.read(run)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_cursor({"t": rows[-1].created_at.isoformat(), "id": str(rows[-1].id)})
        if more
        else None
    )
    return [saga_view(row) for row in rows], next_cursor


async def get_saga(saga_id: uuid.UUID, *, deps: ApiDeps) -> dict[str, Any]:
    async def run(session: AsyncSession) -> dict[str, Any] | None:
        row = (await session.execute(select(sagas).where(sagas.c.id == saga_id))).first()
        if row is None:
            return None
        logged = await session.execute(
            select(saga_steps).where(saga_steps.c.saga_id == saga_id).order_by(saga_steps.c.id)
        )
        return {**saga_view(row), "steps": [step_view(step) for step in logged]}

    found = await deps.sessions.read(run)
    if found is None:
        raise ProblemError(status=404, code="not_found", detail="No such saga.")
    return found
