"""The order path's SQL, in one place and one style: Core statements built once,
run on a connection by named functions (the batch forms beside the single
ones). The placement, the saga and the cancel call these; nothing on the order
path builds SQL of its own or goes through the ORM's unit of work, whose
identity map and per-call statement building cost a third of an api
instance's CPU per order. The placement itself is one call of the SQL
function ``place_order`` (migration 0007), one round trip. ``bench/order_shape.sql``
is the placement for pgbench; tests/integration/test_order_statements.py fails
when the two part ways.
"""

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Row, Text, Uuid, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tenx_api.adapters.orm import Base
from tenx_api.domain.orders import OrderStatus

PRODUCTS, ORDERS, ITEMS, SAGAS = (
    Base.metadata.tables[name] for name in ("products", "orders", "order_items", "sagas")
)

# -- products ---------------------------------------------------------------------

_PRODUCT = select(PRODUCTS).where(PRODUCTS.c.id == bindparam("id"))
# A stock change bumps the version and keeps its trace; StockChanged is
# announced later, once per product for all the changes of a short window
# (``service_layer.stock_announcements``). The placement's reservation is in
# ``place_order`` below.
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


_PRICES = select(PRODUCTS.c.id, PRODUCTS.c.price_cents, PRODUCTS.c.currency).where(
    PRODUCTS.c.id == any_(bindparam("ids", type_=ARRAY(Uuid)))
)


async def prices(
    conn: AsyncConnection, product_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, str]]:
    """The price and currency of each product of ``product_ids`` that exists."""
    rows = await conn.execute(_PRICES, {"ids": list(product_ids)})
    return {row.id: (row.price_cents, row.currency) for row in rows}


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


# -- placing an order -------------------------------------------------------------

# The SQL function of migration 0007 (its text is there): the key claimed, the
# stored answer or the reservation of every line, and the order's rows,
# events, saga and NOTIFYs, as one statement outside a transaction block,
# which is then its own transaction: one round trip.
_PLACE = text(
    "SELECT outcome, earlier_hash, earlier_status, earlier_body FROM place_order("
    ":user_id, :key, :request_hash, :lines, :change_trace, :order, :answer, :events, :saga,"
    " :channels)"
).bindparams(
    bindparam("user_id", type_=Uuid),
    bindparam("key", type_=Text),
    bindparam("request_hash", type_=Text),
    *(
        bindparam(name, type_=JSONB)
        for name in ("lines", "change_trace", "order", "answer", "events", "saga")
    ),
    bindparam("channels", type_=ARRAY(Text)),
)
REFUSALS = frozenset({"unknown_product", "out_of_stock", "mixed_currencies", "price_changed"})


class RefusedError(Exception):
    """A placement the database refused: the problem's ``code``, and its
    detail (the product's id; for ``price_changed``, every line's product's
    price and currency now, ``{id: [price_cents, currency]}``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)
        self.code, self.detail = code, detail

    def prices(self) -> dict[uuid.UUID, tuple[int, str]]:
        """A ``price_changed``'s prices of now, by product."""
        return {
            uuid.UUID(product): (int(cents), str(currency))
            for product, (cents, currency) in json.loads(self.detail).items()
        }


async def place_order(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    key: str,
    request_hash: str,
    lines: Sequence[Mapping[str, Any]],
    change_trace: Mapping[str, str],
    order: Mapping[str, Any],
    answer: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    saga: Mapping[str, Any],
    channels: Sequence[str],
) -> Row[Any]:
    """Place an order in one statement, on ``conn`` outside a transaction
    block: its ``outcome`` is ``placed``, ``key_in_use``, or ``earlier``
    (with the ``earlier_hash``, ``earlier_status`` and ``earlier_body``
    stored under the key). ``lines`` in product order, each with the price
    and currency it was priced at; rows as their columns. Raises ``RefusedError``
    (nothing written)."""
    params = {
        "user_id": user_id,
        "key": key,
        "request_hash": request_hash,
        "lines": [_plain(line) for line in lines],
        "change_trace": change_trace,
        "order": _plain(order),
        "answer": answer,
        "events": [_plain(event) for event in events],
        "saga": _plain(saga),
        "channels": list(channels),
    }
    try:
        return (await conn.execute(_PLACE, params)).one()
    except DBAPIError as exc:
        raised = exc.orig.__cause__ if exc.orig is not None else None
        code = getattr(raised, "message", None)
        if getattr(raised, "sqlstate", None) == "P0001" and code in REFUSALS:
            raise RefusedError(code, getattr(raised, "detail", None) or "") from None
        raise


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values as JSON has them (ids and times as text)."""
    return {
        column: str(value) if isinstance(value, uuid.UUID) else
        value.isoformat() if isinstance(value, datetime) else value
        for column, value in row.items()
    }  # fmt: skip


# -- orders -------------------------------------------------------------------------


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
