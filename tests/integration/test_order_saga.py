"""The order saga on the real stack (edge, api, its worker, PostgreSQL, Kafka):
approve, decline, a provider that never answers, a customer's cancel after
confirmation, and a worker killed in the middle of a step."""

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_api.adapters.orm import SandboxPayment
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tests.support.stack import (
    admin,
    eventually,
    new_key,
    new_product,
    new_user,
    order_body,
    pid_of,
    stack,
)


@pytest.fixture
async def sessions(api_settings: ApiSettings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = primary_engine(api_settings)
    yield async_sessionmaker(engine)
    await engine.dispose()


class Shop:
    """A user, an admin and a fresh product with 10 in stock."""

    def __init__(self, edge: httpx.AsyncClient) -> None:
        self.edge = edge

    async def open(self) -> "Shop":
        self.admin = await admin(self.edge)
        self.user = await new_user(self.edge)
        self.product = await new_product(self.edge, self.admin, stock=10)
        return self

    async def order(self, card: str, quantity: int = 2) -> str:
        placed = await self.edge.post(
            "/v1/orders",
            json=order_body(self.product, quantity, card),
            headers={**self.user, **new_key()},
        )
        assert placed.status_code == 201, placed.text
        order_id: str = placed.json()["id"]
        return order_id

    async def stock(self) -> int:
        product = await self.edge.get(f"/v1/products/{self.product}", headers=self.admin)
        stock: int = product.json()["stock"]
        return stock

    async def saga(self, order_id: str) -> dict[str, Any]:
        # The admin did not write it: their read may come from a replica that
        # has not replayed the order yet (read-your-writes is the writer's).
        async def found() -> httpx.Response | None:
            response = await self.edge.get(f"/v1/admin/sagas/{order_id}", headers=self.admin)
            return None if response.status_code == 404 else response

        response = await eventually(found, timeout_s=10)
        assert response.status_code == 200, response.text
        saga: dict[str, Any] = response.json()
        return saga

    async def finished(self, order_id: str, *, timeout_s: float = 60) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            saga = await self.saga(order_id)
            return saga if saga["status"] not in ("running", "compensating") else None

        return await eventually(done, timeout_s=timeout_s)

    async def order_status(self, order_id: str) -> str:
        order = await self.edge.get(f"/v1/orders/{order_id}", headers=self.user)
        status: str = order.json()["status"]
        return status


@pytest.fixture
async def shop(edge: httpx.AsyncClient) -> Shop:
    return await Shop(edge).open()


async def ledger(sessions: async_sessionmaker[AsyncSession], order_id: str) -> list[SandboxPayment]:
    async with sessions() as session:
        rows = await session.scalars(
            select(SandboxPayment).where(SandboxPayment.idempotency_key == order_id)
        )
        return list(rows)


def outcomes(saga: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["step"], step["outcome"]) for step in saga["steps"]]


async def test_an_approved_payment_confirms_the_order(
    shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await shop.order("pm_card_visa")
    saga = await shop.finished(order_id)
    assert saga["status"] == "completed"
    assert outcomes(saga) == [("authorize_payment", "approved")]
    assert await eventually(lambda: _is(shop, order_id, "confirmed"))
    assert await shop.stock() == 8
    [payment] = await ledger(sessions, order_id)  # one authorization, under the order id
    assert (payment.status, payment.amount_cents) == ("authorized", 5000)


async def _is(shop: Shop, order_id: str, status: str) -> bool:
    return await shop.order_status(order_id) == status


async def test_a_declined_card_cancels_the_order_and_puts_the_stock_back(
    shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await shop.order("pm_card_chargeDeclined")
    saga = await shop.finished(order_id)
    assert (saga["status"], saga["reason"]) == ("compensated", "payment_declined")
    assert outcomes(saga) == [
        ("authorize_payment", "declined"),
        ("void_payment", "voided"),
        ("release_stock", "released"),
    ]
    assert await eventually(lambda: _is(shop, order_id, "cancelled"))
    assert await shop.stock() == 10
    [payment] = await ledger(sessions, order_id)
    assert payment.decline_code == "card_declined"


async def test_a_provider_that_never_answers_is_retried_then_compensated(
    shop: Shop, sessions: async_sessionmaker[AsyncSession], api_settings: ApiSettings
) -> None:
    order_id = await shop.order("pm_card_timeout")
    saga = await shop.finished(order_id)
    assert (saga["status"], saga["reason"]) == ("compensated", "payment_timeout")
    attempts = api_settings.payment_max_attempts
    assert outcomes(saga) == [("authorize_payment", "timeout")] * attempts + [
        ("void_payment", "voided"),
        ("release_stock", "released"),
    ]
    assert await eventually(lambda: _is(shop, order_id, "cancelled"))
    assert await shop.stock() == 10
    [payment] = await ledger(sessions, order_id)  # the void came first: no late hold can land
    assert payment.status == "voided"


async def test_cancelling_a_confirmed_order_releases_its_stock_and_voids_its_payment(
    shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await shop.order("pm_card_visa")
    assert (await shop.finished(order_id))["status"] == "completed"
    cancelled = await shop.edge.post(f"/v1/orders/{order_id}/cancel", headers=shop.user)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await shop.stock() == 10  # at once
    saga = await shop.finished(order_id)
    assert (saga["status"], saga["reason"]) == ("compensated", "cancelled_by_customer")
    assert outcomes(saga) == [
        ("authorize_payment", "approved"),
        ("diverted", "cancelled_by_customer"),
        ("void_payment", "voided"),
        ("release_stock", "released"),
    ]
    [payment] = await ledger(sessions, order_id)
    assert payment.status == "voided"
    assert payment.voided_at is not None
    again = await shop.edge.post(f"/v1/orders/{order_id}/cancel", headers=shop.user)
    assert again.status_code == 200  # twice is the same as once
    assert await shop.stock() == 10


async def test_a_saga_whose_worker_dies_mid_step_finishes_after_a_restart(
    shop: Shop, api_settings: ApiSettings
) -> None:
    order_id = await shop.order("pm_card_timeout")

    async def in_step() -> bool:
        saga = await shop.saga(order_id)
        return saga["status"] == "running" and saga["attempts"] >= 1 and not saga["steps"]

    await eventually(in_step)  # claimed, waiting on the provider, nothing recorded yet
    os.kill(pid_of("api-worker"), signal.SIGKILL)
    await stack("up")  # starts what is down: a new worker
    saga = await shop.finished(order_id, timeout_s=120)
    assert (saga["status"], saga["reason"]) == ("compensated", "payment_timeout")
    # The attempt that died counts: the new worker ran the remaining ones.
    attempts = [step["attempt"] for step in saga["steps"] if step["step"] == "authorize_payment"]
    assert attempts == list(range(2, api_settings.payment_max_attempts + 1))
    assert await shop.stock() == 10


async def test_operators_list_sagas_by_status(shop: Shop) -> None:
    order_id = await shop.order("pm_card_chargeDeclined")
    await shop.finished(order_id)
    listed = await shop.edge.get("/v1/admin/sagas?status=compensated&limit=100", headers=shop.admin)
    assert listed.status_code == 200
    assert order_id in [saga["id"] for saga in listed.json()["items"]]
    assert all(saga["status"] == "compensated" for saga in listed.json()["items"])
    forbidden = await shop.edge.get("/v1/admin/sagas", headers=shop.user)
    assert forbidden.status_code == 403
    missing = await shop.edge.get(f"/v1/admin/sagas/{uuid.uuid4()}", headers=shop.admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_a_cancel_while_the_payment_step_runs_wins_over_that_step(
    shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await shop.order("pm_card_timeout")

    async def in_step() -> bool:
        saga = await shop.saga(order_id)
        return saga["status"] == "running" and saga["attempts"] >= 1 and not saga["steps"]

    await eventually(in_step)
    cancelled = await shop.edge.post(f"/v1/orders/{order_id}/cancel", headers=shop.user)
    assert cancelled.json()["status"] == "cancelled"
    await shop.finished(order_id)
    await asyncio.sleep(3)  # the running attempt times out (2 s) and is dropped
    saga = await shop.saga(order_id)
    assert (saga["status"], saga["reason"]) == ("compensated", "cancelled_by_customer")
    assert outcomes(saga) == [
        ("diverted", "cancelled_by_customer"),
        ("void_payment", "voided"),
        ("release_stock", "released"),
    ]  # no timeout recorded: the fence dropped the stale attempt
    assert await shop.stock() == 10
    [payment] = await ledger(sessions, order_id)
    assert payment.status == "voided"
