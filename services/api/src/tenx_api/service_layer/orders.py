"""Placing and reading orders.

An order is placed in one statement, which is its own transaction: the SQL
function ``place_order`` (migration 0007, called by ``statements.place_order``)
claims the idempotency key (an advisory lock, so a concurrent repeat gets 409
at once), returns the answer stored under it, or reserves the stock of every
line with a conditional UPDATE (never below zero, whatever the concurrency;
StockChanged follows once per product per window, ``stock_announcements``)
and writes the order, its lines, its OrderPlaced event, its saga (which
authorizes the payment, ``order_saga``) and the answer stored under the key
for replay. Each line is priced by the process (``ApiDeps.prices``: a product
not seen yet is read from the primary first); the database reserves a line
only at that price, and a placement priced at an old one is refused with the
new prices and runs again. Refusals (unknown product, out of stock) are not
stored: a retry with the same key runs again.

The key is the ``Idempotency-Key`` header (1 to 255 characters, else 400
``idempotency_key_required``), kept per user. A repeat while the first request
runs is 409 ``idempotency_key_in_use``; a repeat with the same body gets the
first answer again (its status and body, with ``Idempotent-Replayed: true``),
one with another body 422 ``idempotency_key_reused``. The refusals are 422
``unknown_product`` or ``mixed_currencies`` and 409 ``out_of_stock`` (or
``price_changed``, for a price that changed between each of three tries);
each rolls the whole order back. Only the 201 is stored (Stripe replays errors too; here
they run again). Lines are reserved in product order, so two orders never
wait on each other's rows. Keys are kept ``idempotency_key_ttl_s`` (24 h, never
less), then deleted by an hourly sweep that one instance runs at a time (an
advisory lock).

An order is visible to its owner and to admins; anyone else gets 404, so ids
cannot be probed. The list is the caller's own, newest first (keyset on
created_at and id). A cancel (owner or admin) of a pending or confirmed order
puts its stock back (announced by StockChanged), cancels it (OrderCancelled,
``cancelled_by_customer``) and moves its saga to ``void_payment``, all in one
transaction, which locks the saga's row before the order's (the saga runner's
order; the other way round the two deadlocked); cancelling again answers the
same.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tenx_api.adapters import statements as sql
from tenx_api.adapters.orm import IdempotencyKey, Order, OrderItem, outbox, saga_steps, sagas
from tenx_api.domain.orders import OrderStatus, PlaceOrder
from tenx_api.service_layer import stock_announcements
from tenx_api.service_layer.catalog import cache_key
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.data import UnitOfWork
from tenx_common.events.orders_orders import OrderCancelled, OrderLine, OrderPlaced
from tenx_common.observability import current_traceparent
from tenx_common.security import Principal
from tenx_common.web import ProblemError, decode_cursor, encode_cursor
from tenx_common.work import SagaStatus, divert, start_saga

_SWEEP_LOCK = 0x7E4E_0002  # advisory lock of the idempotency-key sweep


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def public(order: Any, items: Sequence[Any]) -> dict[str, Any]:
    """An order as the API shows it (from an ORM object, a row or a namespace)."""
    return {
        "id": str(order.id),
        "status": order.status,
        "items": [
            {
                "product_id": str(item.product_id),
                "quantity": item.quantity,
                "unit_price_cents": item.unit_price_cents,
            }
            for item in items
        ],
        "total_cents": order.total_cents,
        "currency": order.currency,
        "payment_method": order.payment_method,
        "created_at": order.created_at.isoformat(),
    }


async def place_order(
    cmd: PlaceOrder, *, user_id: uuid.UUID, key: str, request_hash: str, deps: ApiDeps
) -> Answer:
    # In product order, so two orders never wait on each other's rows.
    lines = sorted(cmd.items, key=lambda item: item.product_id)
    async with deps.autocommit.connect() as db:
        for _ in range(_PRICINGS):
            if missing := deps.prices.missing(line.product_id for line in lines):
                deps.prices.learn(await sql.prices(db, missing))
            try:
                placed, answer = await _place(cmd, lines, user_id, key, request_hash, db, deps)
                break
            except sql.RefusedError as refused:
                if refused.code != "price_changed":
                    raise _refusal(refused) from None
                deps.prices.learn(refused.prices())
        else:
            raise ProblemError(
                status=409, code="price_changed", detail="The price of a product changed; retry."
            )
    if placed:
        await deps.committed(str(user_id), *(cache_key(line.product_id) for line in lines))
    return answer


_PRICINGS = 3  # a price changing again between a placement's tries is one change too many


async def _place(
    cmd: PlaceOrder,
    lines: Sequence[Any],
    user_id: uuid.UUID,
    key: str,
    request_hash: str,
    db: AsyncConnection,
    deps: ApiDeps,
) -> tuple[bool, Answer]:
    """One try, at the prices the process knows: (whether it placed, the answer)."""
    priced = []
    for line in lines:
        price = deps.prices.get(line.product_id)
        if price is None:  # products are never deleted: one the primary has not is none
            raise _refusal(sql.RefusedError("unknown_product", str(line.product_id)))
        priced.append((line, *price))
    order_id, now = uuid.uuid4(), datetime.now(UTC)
    items = [
        {
            "product_id": line.product_id,
            "quantity": line.quantity,
            "price_cents": price,
            "currency": currency,
        }
        for line, price, currency in priced
    ]
    order = {
        "id": order_id,
        "user_id": user_id,
        "status": OrderStatus.PENDING.value,
        "total_cents": sum(i["quantity"] * i["price_cents"] for i in items),
        "currency": items[0]["currency"],  # the database refuses mixed currencies
        "payment_method": cmd.payment_method,
        "created_at": now,
        "updated_at": now,
    }
    shown = [SimpleNamespace(**i, unit_price_cents=i["price_cents"]) for i in items]
    body = public(SimpleNamespace(**order), shown)
    async with deps.uow() as uow:  # stages the events and the saga; the function writes them
        await uow.publish(
            OrderPlaced(
                order_id=order_id,
                user_id=user_id,
                items=[
                    OrderLine(
                        product_id=i["product_id"],
                        quantity=i["quantity"],
                        unit_price_cents=i["price_cents"],
                    )
                    for i in items
                ],
                total_cents=order["total_cents"],
                currency=order["currency"],
                payment_method=cmd.payment_method,
            )
        )
        start_saga(uow, sagas, saga_id=order_id, kind="order", step="authorize_payment")
        stock_announcements.changed(uow)
        staged, channels = uow.take_staged()
    outcome = await sql.place_order(
        db,
        user_id=user_id,
        key=key,
        request_hash=request_hash,
        lines=items,
        change_trace=current_traceparent(),  # the stock changes' announcement continues it
        order=order,
        answer=body,
        events=staged[outbox],
        saga=staged[sagas][0],
        channels=channels,
    )
    if outcome.outcome == "key_in_use":
        raise ProblemError(
            status=409,
            code="idempotency_key_in_use",
            detail="A request with this Idempotency-Key is still being processed.",
        )
    if outcome.outcome == "earlier":
        if outcome.earlier_hash != request_hash:
            raise ProblemError(
                status=422,
                code="idempotency_key_reused",
                detail="This Idempotency-Key was used with a different request.",
            )
        return False, Answer(outcome.earlier_status, outcome.earlier_body, replayed=True)
    return True, Answer(201, body)


def _refusal(refused: sql.RefusedError) -> ProblemError:
    if refused.code == "unknown_product":
        return ProblemError(
            status=422, code="unknown_product", detail=f"Product {refused.detail} does not exist."
        )
    if refused.code == "out_of_stock":
        return ProblemError(
            status=409,
            code="out_of_stock",
            detail=f"Not enough stock of product {refused.detail}.",
        )
    return ProblemError(
        status=422, code="mixed_currencies", detail="All items must share one currency."
    )


async def cancel_order(
    order_id: uuid.UUID, principal: Principal, *, deps: ApiDeps
) -> dict[str, Any]:
    """Cancel a pending or confirmed order: its stock goes back and OrderCancelled
    is written at once; the saga then voids the payment (compensation)."""
    async with deps.uow() as uow:
        db = await uow.session.connection()
        await sql.lock_saga(db, order_id)  # the saga's row before the order's, as the runner
        order = await sql.order(db, order_id, lock=True)
        if order is None or not (principal.is_admin or order.user_id == principal.user_id):
            raise ProblemError(status=404, code="not_found", detail="No such order.")
        items = await sql.order_items(db, order_id)
        if order.status != OrderStatus.CANCELLED:  # cancelling twice is the same as once
            keys = await release_order(uow, order, items, reason="cancelled_by_customer")
            await divert(
                uow,
                sagas,
                saga_steps,
                saga_id=order_id,
                only_from=(SagaStatus.RUNNING, SagaStatus.COMPLETED),
                status=SagaStatus.COMPENSATING,
                step="void_payment",
                reason="cancelled_by_customer",
            )
            await uow.commit()
            await deps.committed(str(principal.user_id), *keys)
            return public(
                SimpleNamespace(**{**order._asdict(), "status": OrderStatus.CANCELLED}), items
            )
    return public(order, items)


async def release_order(
    uow: UnitOfWork, order: Row[Any], items: Sequence[Row[Any]], *, reason: str
) -> list[str]:
    """In ``uow``: put a (locked) order's stock back and cancel it, with its events;
    the cache keys to drop after commit. Nothing when it is cancelled already."""
    if order.status == OrderStatus.CANCELLED:
        return []
    db = await uow.session.connection()
    now = datetime.now(UTC)
    trace = current_traceparent()
    keys = []
    for item in sorted(items, key=lambda i: i.product_id):  # the order placement locks in
        await sql.release_stock(
            db, product_id=item.product_id, quantity=item.quantity, now=now, trace=trace
        )
        keys.append(cache_key(item.product_id))
    stock_announcements.changed(uow)
    await sql.cancel_order(db, order.id, now=now)
    await uow.publish(
        OrderCancelled(
            order_id=order.id,
            user_id=order.user_id,
            reason=reason,
            total_cents=order.total_cents,
            currency=order.currency,
        )
    )
    return keys


async def sweep_idempotency_keys(*, deps: ApiDeps) -> int:
    """Forget keys older than their retention (24 h by default); one instance at a time."""
    cutoff = datetime.now(UTC) - timedelta(seconds=deps.settings.idempotency_key_ttl_s)
    async with deps.uow() as uow:
        if not await uow.session.scalar(select(func.pg_try_advisory_xact_lock(_SWEEP_LOCK))):
            return 0
        result = await uow.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
        )
        await uow.commit()
    return int(getattr(result, "rowcount", 0) or 0)


async def get_order(order_id: uuid.UUID, principal: Principal, *, deps: ApiDeps) -> dict[str, Any]:

    async def query(session: AsyncSession) -> dict[str, Any] | None:
        order = await session.get(Order, order_id)
        # Someone else's order is "not found": ids cannot be probed.
        if order is None or not (principal.is_admin or order.user_id == principal.user_id):
            return None
        items = await session.execute(select(OrderItem).where(OrderItem.order_id == order_id))
        return public(order, list(items.scalars()))

    found = await deps.sessions.read(query, client=str(principal.user_id))
    if found is None:
        raise ProblemError(status=404, code="not_found", detail="No such order.")
    return found


async def list_orders(
    principal: Principal, *, status: str | None, limit: int, cursor: str | None, deps: ApiDeps
) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's own orders, newest first."""
    query = (
        select(Order)
        .where(Order.user_id == principal.user_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(Order.status == status)
    if cursor is not None:
        created_at, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Order.created_at < created_at,
                and_(Order.created_at == created_at, Order.id < last_id),
            )
        )

    async def run(session: AsyncSession) -> tuple[list[Order], list[OrderItem]]:
        orders = list((await session.execute(query)).scalars())
        ids = [order.id for order in orders[:limit]]
        items = await session.execute(select(OrderItem).where(OrderItem.order_id.in_(ids)))
        return orders, list(items.scalars())

    orders, items = await deps.sessions.read(run, client=str(principal.user_id))
    by_order: dict[uuid.UUID, list[OrderItem]] = {}
    for item in items:
        by_order.setdefault(item.order_id, []).append(item)
    more = len(orders) > limit
    orders = orders[:limit]
    next_cursor = _encode_cursor(orders[-1]) if more else None
    return [public(o, by_order.get(o.id, [])) for o in orders], next_cursor


def _encode_cursor(order: Order) -> str:
    return encode_cursor({"t": order.created_at.isoformat(), "id": str(order.id)})


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    return decode_cursor(cursor, lambda p: (datetime.fromisoformat(p["t"]), uuid.UUID(p["id"])))
