"""Catalog use cases: admins create and change products; anyone reads them.

A product is created once per SKU (else 409 ``sku_taken``) and changed by a
PATCH of at least one field. Each change bumps its ``version`` and stages
ProductCreated or ProductUpdated in its transaction; a stock that moved is
announced by StockChanged with the window's other changes
(``stock_announcements``). Every catalog event carries the whole product.

A product read is public and cache-aside in Redis (``product_cache_ttl_s``,
5 min), answered with a strong ETag of the body (304 on ``If-None-Match``;
``entrypoints/http.py``). An anonymous reader (no ``Authorization`` header: it
cannot have written the product) may get this process's near copy, which
lives ``near_cache_ttl_s`` (5 s) at most and which a change drops on every
instance through Redis pub/sub (``tenx_common.data.cache.NearCache``). A
signed-in reader always reads through Redis, so a writer sees its change at
once on either instance. After a write, ``ApiDeps.committed`` makes the writer
and the next rebuild read the change (read-your-writes), then drops the copies.

The list pages by keyset on the id: 1 to 100 a page, an opaque cursor (one
that does not decode is 400 ``invalid_cursor``).
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenx_api.adapters import statements as sql
from tenx_api.adapters.orm import Product
from tenx_api.domain.catalog import FIELDS, ProductCreate, ProductUpdate, event_fields
from tenx_api.service_layer import stock_announcements
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.events.catalog_products import ProductCreated, ProductUpdated
from tenx_common.observability import current_traceparent
from tenx_common.web import ProblemError, decode_cursor, encode_cursor


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def public(product: Product | Row[Any]) -> dict[str, Any]:
    return {
        "id": str(product.id),
        **{name: getattr(product, name) for name in FIELDS},
        "version": product.version,
        "created_at": product.created_at.isoformat(),
        "updated_at": product.updated_at.isoformat(),
    }


def not_found() -> ProblemError:
    return ProblemError(status=404, code="not_found", detail="No such product.")


async def create_product(cmd: ProductCreate, *, client: str, deps: ApiDeps) -> dict[str, Any]:
    now = datetime.now(UTC)
    product = Product(
        id=uuid.uuid4(),
        version=1,
        announced_version=1,  # ProductCreated carries its stock
        created_at=now,
        updated_at=now,
        **cmd.model_dump(),
    )
    async with deps.uow() as uow:
        uow.session.add(product)
        try:
            await uow.session.flush()
        except IntegrityError:
            raise ProblemError(
                status=409, code="sku_taken", detail=f"SKU {cmd.sku!r} is already in the catalog."
            ) from None
        await uow.publish(ProductCreated(**event_fields(product)))
        await uow.commit()
    await deps.committed(client, cache_key(product.id))
    return public(product)


async def update_product(
    product_id: uuid.UUID, cmd: ProductUpdate, *, client: str, deps: ApiDeps
) -> dict[str, Any]:
    async with deps.uow() as uow:
        product = await uow.session.get(Product, product_id, with_for_update=True)
        if product is None:
            raise not_found()
        old_stock = product.stock
        for name, value in cmd.model_dump(exclude_unset=True).items():
            setattr(product, name, value)
        product.version += 1
        product.updated_at = datetime.now(UTC)
        await uow.publish(ProductUpdated(**event_fields(product)))
        if product.stock != old_stock:  # announced with the window's other changes
            product.change_trace = dict(current_traceparent())
            stock_announcements.changed(uow)
        elif product.announced_version == product.version - 1:
            product.announced_version = product.version  # nothing new to announce
        await uow.commit()
    await deps.committed(client, cache_key(product_id))
    return public(product)


async def get_product(product_id: uuid.UUID, *, deps: ApiDeps, anonymous: bool) -> bytes:
    """The product's public JSON, cache-aside. A rebuild reads its last write
    (the cache key is the read-your-writes client), so whoever asks after a
    change sees the change. An anonymous reader, who cannot have written it,
    may get this process's near copy (dropped by a change within moments)."""

    async def query(session: AsyncSession) -> bytes | None:
        product = await sql.product(await session.connection(), product_id)
        return json.dumps(public(product)).encode() if product else None

    document = await deps.cache.get_or_load(
        cache_key(product_id),
        lambda: deps.sessions.read(query, client=cache_key(product_id)),
        ttl_s=deps.settings.product_cache_ttl_s,
        near=anonymous,
    )
    if document is None:
        raise not_found()
    return document


async def list_products(
    *, category: str | None, limit: int, cursor: str | None, client: str | None, deps: ApiDeps
) -> Page:
    query = select(Product).order_by(Product.id).limit(limit + 1)
    if category is not None:
        query = query.where(Product.category == category)
    if cursor is not None:
        query = query.where(Product.id > _decode_cursor(cursor))

    async def run(session: AsyncSession) -> list[Product]:
        return list((await session.execute(query)).scalars())

    products = await deps.sessions.read(run, client=client)
    more = len(products) > limit
    products = products[:limit]
    next_cursor = _encode_cursor(products[-1].id) if more else None
    return Page(items=[public(p) for p in products], next_cursor=next_cursor)


def cache_key(product_id: uuid.UUID) -> str:
    return f"product:{product_id}"


def _encode_cursor(last_id: uuid.UUID) -> str:
    return encode_cursor({"after": str(last_id)})


def _decode_cursor(cursor: str) -> uuid.UUID:
    return decode_cursor(cursor, lambda position: uuid.UUID(position["after"]))
