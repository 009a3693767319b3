"""StockChanged, coalesced per product: many orders of one product in a short
time are announced by a few events, at least a window apart, the last with
the stock the product has; each continues the trace of a change it announces."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tenx_api.adapters.orm import outbox
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_common.events.catalog_products import StockChanged
from tests.support.stack import (
    EDGE,
    admin,
    eventually,
    new_key,
    new_product,
    new_user,
    order_body,
    patiently,
)

ORDERS = 30


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as client:
        yield client


async def test_many_orders_of_a_product_are_announced_by_few_stock_changes_a_window_apart(
    edge: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    product = await new_product(edge, await admin(edge), stock=100)
    buyer = await new_user(edge)

    async def place() -> httpx.Response:
        return await patiently(
            lambda: edge.post("/v1/orders", json=order_body(product), headers=buyer | new_key())
        )

    placed = await asyncio.gather(*(place() for _ in range(ORDERS)))
    assert {r.status_code for r in placed} == {201}

    engine = primary_engine(api_settings)
    try:

        async def announced() -> list[dict[str, Any]] | None:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(outbox.c.payload, outbox.c.headers, outbox.c.occurred_at)
                    .where(outbox.c.key == product, outbox.c.type == StockChanged.TYPE)
                    .order_by(outbox.c.occurred_at)
                )
                found = [
                    {**row.payload["data"], "at": row.occurred_at, "headers": row.headers}
                    for row in rows
                ]
            return found if found and found[-1]["stock"] == 100 - ORDERS else None

        events = await eventually(announced, timeout_s=30)
    finally:
        await engine.dispose()

    assert len(events) < ORDERS
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions))  # each newer than the one before
    window = timedelta(seconds=api_settings.stock_announce_window_s)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(events)]
    assert all(gap >= window * 0.9 for gap in gaps), gaps
    assert all("traceparent" in e["headers"] for e in events)
