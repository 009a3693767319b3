"""The order path's SQL, in one place and one style: Core statements built once,
run on a connection by named functions (the batch forms beside the single
ones). The placement, the saga and the cancel call these; nothing on the order
path builds SQL of its own or goes through the ORM's unit of work, whose
identity map and per-call statement building cost a third of an api
instance's CPU per order. ``bench/order_shape.sql`` is the placement's
transaction for pgbench; tests/integration/test_order_statements.py fails when
the two part ways.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Row,
    Uuid,
    any_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from tenx_api.adapters.orm import Base
from tenx_api.domain.orders import OrderStatus
from tenx_common.data.uow import UnitOfWork

PRODUCTS, ORDERS, ITEMS, KEYS, SAGAS = (
    Base.metadata.tables[name]
    for name in ("products", "orders", "order_items", "idempotency_keys", "sagas")
)

# -- products ---------------------------------------------------------------------

_PRODUCT = select(PRODUCTS).where(PRODUCTS.c.id == bindparam("id"))
# A stock change bumps the version and keeps its trace; StockChanged is
# announced later, once per product for all the changes of a short window
# (``service_layer.stock_announcements``).
_RESERVE = (
    update(PRODUCTS)
    .where(PRODUCTS.c.id == bindparam("product_id"), PRODUCTS.c.stock >= bindparam("quantity"))
    .values(
        stock=PRODUCTS.c.stock - bindparam("quantity"),
        version=PRODUCTS.c.version + 1,
        change_trace=bindparam("trace", type_=JSONB),
        updated_at=bindparam("now"),
    )
    .returning(*PRODUCTS.c)
)
_RELEASE = (
    update(PRODUCTS)
    .where(PRODUCTS.c.id == bindparam("product_id"))
    .values(
        stock=PRODUCTS.c.stock + bindparam("quantity"),
        version=PRODUCTS.c.version + 1,
        change_trace=bindparam("trace", type_=JSONB),
        updated_at=bindparam("now"),
    )
    .returning(*PRODUCTS.c)
)
_UNANNOUNCED = (
    select(PRODUCTS.c.id)
    .where(PRODUCTS.c.version != PRODUCTS.c.announced_version)  # ix_products_unannounced
    .order_by(PRODUCTS.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
    .cte("unannounced")
)
_ANNOUNCE = (
    update(PRODUCTS)
    .where(PRODUCTS.c.id == _UNANNOUNCED.c.id)
    .values(announced_version=PRODUCTS.c.version)
    .returning(*PRODUCTS.c)
)


async def product(conn: AsyncConnection, product_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(_PRODUCT, {"id": product_id})).one_or_none()


async def reserve_stock(
    conn: AsyncConnection,
    *,
    product_id: uuid.UUID,
    quantity: int,
    now: datetime,
    trace: Mapping[str, str],
) -> Row[Any] | None:
    """Take ``quantity`` off the product's stock unless that would go below zero
    (whatever the concurrency); the product as it is now, None when refused."""
    params = {"product_id": product_id, "quantity": quantity, "now": now, "trace": trace}
    return (await conn.execute(_RESERVE, params)).one_or_none()


async def release_stock(
    conn: AsyncConnection,
    *,
    product_id: uuid.UUID,
    quantity: int,
    now: datetime,
    trace: Mapping[str, str],
) -> Row[Any]:
    """Put ``quantity`` back; the product as it is now."""
    params = {"product_id": product_id, "quantity": quantity, "now": now, "trace": trace}
    return (await conn.execute(_RELEASE, params)).one()


async def announce_stock(conn: AsyncConnection, *, limit: int) -> list[Row[Any]]:
    """Up to ``limit`` products whose newest version is not announced yet,
    marked announced (rows a placement holds are skipped: the next round
    takes them); each as it is now."""
    return list(await conn.execute(_ANNOUNCE, {"limit": limit}))


# -- idempotency keys ----------------------------------------------------------------

_CLAIM_KEY = select(func.pg_try_advisory_xact_lock(func.hashtextextended(bindparam("lock"), 0)))
_EARLIER = select(KEYS.c.request_hash, KEYS.c.response_status, KEYS.c.response_body).where(
    KEYS.c.user_id == bindparam("user_id"), KEYS.c.key == bindparam("key")
)


# The key's stored answer and, only where there is none, the first line's
# reservation, in one statement (one round trip fewer per placement). It runs
# after the key is claimed, so its snapshot sees any answer committed under it.
_EARLIER_CTE = _EARLIER.cte("earlier")
_RESERVED_UNLESS_EARLIER = _RESERVE.where(~exists(_EARLIER_CTE.select())).cte("reserved")
_EARLIER_OR_RESERVE = select(
    _EARLIER_CTE.c.request_hash.label("earlier_request_hash"),
    _EARLIER_CTE.c.response_status.label("earlier_response_status"),
    _EARLIER_CTE.c.response_body.label("earlier_response_body"),
    *_RESERVED_UNLESS_EARLIER.c,
).select_from(
    select(literal_column("1").label("one"))
    .subquery("one")
    .outerjoin(_EARLIER_CTE, true())
    .outerjoin(_RESERVED_UNLESS_EARLIER, true())
)


async def claim_key(conn: AsyncConnection, *, user_id: uuid.UUID, key: str) -> bool:
    """Hold the key for this transaction; False when another request holds it."""
    return bool(await conn.scalar(_CLAIM_KEY, {"lock": f"{user_id}:{key}"}))


@dataclass(frozen=True, slots=True)
class Earlier:
    request_hash: str
    response_status: int
    response_body: dict[str, Any]


async def earlier_answer_or_reserve(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    key: str,
    product_id: uuid.UUID,
    quantity: int,
    now: datetime,
    trace: Mapping[str, str],
) -> tuple[Earlier | None, Row[Any] | None]:
    """The answer stored under the (claimed) key; where there is none,
    ``reserve_stock`` of one line: (earlier answer, None) or (None, the
    product as it is now, None when refused)."""
    params = {
        "user_id": user_id,
        "key": key,
        "product_id": product_id,
        "quantity": quantity,
        "now": now,
        "trace": trace,
    }
    row = (await conn.execute(_EARLIER_OR_RESERVE, params)).one()
    if row.earlier_request_hash is not None:
        earlier = Earlier(
            row.earlier_request_hash, row.earlier_response_status, row.earlier_response_body
        )
        return earlier, None
    if row.id is None:
        return None, None
    return None, row


# -- orders -------------------------------------------------------------------------


def stage_order(
    uow: UnitOfWork,
    *,
    order: dict[str, Any],
    items: Sequence[dict[str, Any]],
    key: str,
    request_hash: str,
    answer: dict[str, Any],
) -> None:
    """Write a pending ``order`` (its columns), its ``items`` and the 201
    ``answer`` stored under the idempotency key at the commit: in the
    statement that writes the transaction's events and saga (the lines'
    foreign key is checked at its end), one round trip fewer."""
    uow.insert_at_commit(ORDERS, {**order, "status": OrderStatus.PENDING.value})
    for item in items:
        uow.insert_at_commit(ITEMS, dict(item))
    uow.insert_at_commit(
        KEYS,
        {
            "user_id": order["user_id"],
            "key": key,
            "request_hash": request_hash,
            "response_status": 201,
            "response_body": answer,
            "created_at": order["created_at"],
        },
    )


_ORDER = select(ORDERS).where(ORDERS.c.id == bindparam("id"))
_ORDER_FOR_UPDATE = _ORDER.with_for_update()
_ORDERS = select(ORDERS).where(ORDERS.c.id == any_(bindparam("ids", type_=ARRAY(Uuid))))
_ITEMS_OF = select(ITEMS).where(ITEMS.c.order_id == bindparam("id"))
_CONFIRM = (
    update(ORDERS)
    .where(ORDERS.c.id == any_(bindparam("ids", type_=ARRAY(Uuid))))
    .values(status=OrderStatus.CONFIRMED.value, updated_at=bindparam("now"))
    .returning(ORDERS.c.id, ORDERS.c.user_id, ORDERS.c.total_cents, ORDERS.c.currency)
)
_CANCEL = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("order_id"))
    .values(status=OrderStatus.CANCELLED.value, updated_at=bindparam("now"))
)


async def order(
    conn: AsyncConnection, order_id: uuid.UUID, *, lock: bool = False
) -> Row[Any] | None:
    """The order; ``lock``: FOR UPDATE, until the transaction ends."""
    statement = _ORDER_FOR_UPDATE if lock else _ORDER
    return (await conn.execute(statement, {"id": order_id})).first()


# An order's saga row (its id is the order's), locked. Whoever changes both an
# order and its saga takes the saga first, as the saga runner does when it
# records a step (its fenced update of the saga, then the order's
# confirmation or release); taken the other way round, the two deadlock.
_SAGA_FOR_UPDATE = select(SAGAS.c.id).where(SAGAS.c.id == bindparam("id")).with_for_update()


async def lock_saga(conn: AsyncConnection, order_id: uuid.UUID) -> None:
    """Hold the order's saga row until the transaction ends (before its order's)."""
    await conn.execute(_SAGA_FOR_UPDATE, {"id": order_id})


async def orders(
    conn: AsyncConnection, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Row[Any]]:
    """The orders of ``order_ids`` (those that exist), by id."""
    return {row.id: row for row in await conn.execute(_ORDERS, {"ids": list(order_ids)})}


async def order_items(conn: AsyncConnection, order_id: uuid.UUID) -> list[Row[Any]]:
    return list(await conn.execute(_ITEMS_OF, {"id": order_id}))


async def confirm_orders(
    conn: AsyncConnection, order_ids: Sequence[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, Row[Any]]:
    """Confirm the orders of ``order_ids``; those confirmed (id, user_id,
    total_cents, currency), by id."""
    rows = await conn.execute(_CONFIRM, {"ids": list(order_ids), "now": now})
    return {row.id: row for row in rows}


async def cancel_order(conn: AsyncConnection, order_id: uuid.UUID, *, now: datetime) -> None:
    await conn.execute(_CANCEL, {"order_id": order_id, "now": now})
