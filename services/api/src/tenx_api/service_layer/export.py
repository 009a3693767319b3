"""The admin export: every product and every order, page by page, for the
search-indexer's reindex (it reads the api's data only through the api).

Pages are read on the primary: a reindex notes where the Kafka topic ends and
then reads the snapshot, which must hold every commit whose event came before
that point; a lagging replica might not."""

import uuid
from typing import Any

from sqlalchemy import Row, select

from tenx_api.adapters.orm import Order, Product
from tenx_api.service_layer import catalog
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.web import decode_cursor, encode_cursor


async def export(kind: str, *, limit: int, cursor: str | None, deps: ApiDeps) -> dict[str, Any]:
    table = Product.__table__ if kind == "products" else Order.__table__
    query = select(table).order_by(table.c.id).limit(limit + 1)
    if cursor is not None:
        after = decode_cursor(cursor, lambda position: uuid.UUID(position["after"]))
        query = query.where(table.c.id > after)
    async with deps.uow() as uow:
        rows = list((await uow.session.execute(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    items = [catalog.public(row) if kind == "products" else _order(row) for row in rows]
    return {
        "items": items,
        "next_cursor": encode_cursor({"after": str(rows[-1].id)}) if more else None,
    }


def _order(order: Row[Any]) -> dict[str, Any]:
    return {
        "id": str(order.id),
        "user_id": str(order.user_id),
        "status": order.status,
        "total_cents": order.total_cents,
        "currency": order.currency,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }
