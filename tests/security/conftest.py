"""Security tests mapped to the OWASP API Security Top 10 (2023), one module
per item that applies, against the running stack through the edge."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.stack import EDGE, admin, new_key, new_product, new_user, order_body


@dataclass(frozen=True)
class World:
    """Two customers and an admin, and things the owner has."""

    owner: dict[str, str]
    other: dict[str, str]
    admin: dict[str, str]
    product: str
    order: str
    webhook: str


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as edge:
        operator = await admin(edge)
        owner = await new_user(edge, "owasp-owner")
        other = await new_user(edge, "owasp-other")
        product = await new_product(edge, operator, stock=100)
        placed = await edge.post("/v1/orders", json=order_body(product), headers=owner | new_key())
        assert placed.status_code == 201, placed.text
        hook = await edge.post(
            "/v1/webhooks",
            json={"url": f"http://127.0.0.1:9/{uuid.uuid4().hex}", "events": ["order.confirmed"]},
            headers=owner,
        )
        assert hook.status_code == 201, hook.text
        yield World(owner, other, operator, product, placed.json()["id"], hook.json()["id"])
