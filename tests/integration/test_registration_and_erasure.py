"""The account-deletion saga (orchestrated by auth) across auth, Kafka and api,
on the real stack. (Registration: test_customers.)"""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_api.adapters.orm import CustomerProfile, Order, inbox
from tenx_api.settings import Settings as ApiSettings
from tenx_auth.adapters.orm import AccountDeletion, User
from tenx_auth.settings import Settings as AuthSettings
from tenx_common.data.db import primary_engine
from tenx_common.events import cloud_event
from tenx_common.events.auth_users import UserRegistered
from tenx_notify.settings import Settings as NotifySettings
from tests.support.stack import (
    STRONG,
    admin,
    eventually,
    log_in,
    new_key,
    new_product,
    order_body,
)


@pytest.fixture
async def api_db(api_settings: ApiSettings) -> AsyncIterator[AsyncEngine]:
    engine = primary_engine(api_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def auth_db() -> AsyncIterator[AsyncEngine]:
    engine = primary_engine(AuthSettings())
    yield engine
    await engine.dispose()


async def sign_up(edge: httpx.AsyncClient, name: str) -> tuple[str, str, dict[str, str]]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:10]}@example.com"
    created = await edge.post(
        "/v1/auth/signup", json={"email": email, "password": STRONG, "name": name}
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], email, await log_in(edge, email, STRONG)


async def profile_row(api_db: AsyncEngine, user_id: str) -> Any:
    async with api_db.connect() as conn:
        return (
            await conn.execute(
                select(CustomerProfile.__table__).where(
                    CustomerProfile.user_id == uuid.UUID(user_id)
                )
            )
        ).first()


async def test_deleting_an_account_erases_it_everywhere(
    edge: httpx.AsyncClient,
    api_db: AsyncEngine,
    auth_db: AsyncEngine,
    api_settings: ApiSettings,
) -> None:
    user_id, email, user = await sign_up(edge, "Grace")
    operator = await admin(edge)
    product = await new_product(edge, operator, stock=5)
    await eventually(lambda: profile_row(api_db, user_id))
    await edge.patch("/v1/me", json={"shipping_address": {"line1": "1 Main St"}}, headers=user)
    placed = await edge.post("/v1/orders", json=order_body(product), headers={**user, **new_key()})
    assert placed.status_code == 201

    requested = await edge.delete("/v1/auth/me", headers=user)
    assert requested.status_code == 202, requested.text
    deletion = requested.json()
    assert deletion["status"] == "requested"
    path = f"/v1/auth/deletions/{deletion['deletion_id']}"

    async def completed() -> dict[str, Any] | None:
        status: dict[str, Any] = (await edge.get(path, headers=operator)).json()
        return status if status["status"] == "completed" else None

    done = await eventually(completed)
    assert {reply["service"] for reply in done["replies"]} == {"api", "notify", "search-indexer"}
    assert done["waiting_for"] == []

    # api: an empty tombstone, and no order of the user's any more.
    profile = await profile_row(api_db, user_id)
    assert (profile.name, profile.email, profile.shipping_address) == (None, None, None)
    assert profile.erased_at is not None
    async with api_db.connect() as conn:
        owned = await conn.scalar(select(func.count()).where(Order.user_id == uuid.UUID(user_id)))
        kept = await conn.scalar(
            select(func.count()).where(Order.id == uuid.UUID(placed.json()["id"]))
        )
    assert (owned, kept) == (0, 1)
    # notify: nothing of the user is left.
    notify_db = primary_engine(NotifySettings())
    async with notify_db.connect() as conn:
        for table in ("recipients", "notifications", "deliveries", "preferences", "webhooks"):
            left = await conn.scalar(
                text(f"SELECT count(*) FROM {table} WHERE user_id = :u"),
                {"u": uuid.UUID(user_id)},
            )
            assert left == 0, table
    await notify_db.dispose()
    # auth: the credentials are gone.
    async with auth_db.connect() as conn:
        assert await conn.scalar(select(func.count()).where(User.id == uuid.UUID(user_id))) == 0
    refused = await edge.post("/v1/auth/token", json={"email": email, "password": STRONG})
    assert refused.status_code == 401

    # A late UserRegistered (redelivered, or redriven) does not bring the profile back.
    late = cloud_event(
        UserRegistered(
            user_id=uuid.UUID(user_id),
            email=email,
            name="Grace",
            verification_token="x" * 20,
            verification_expires_at=datetime.now(UTC),
        ),
        source="/tenx/test",
    )
    producer = AIOKafkaProducer(bootstrap_servers=api_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            "auth.users", key=user_id.encode(), value=json.dumps(late).encode()
        )
    finally:
        await producer.stop()

    async def handled() -> bool:
        async with api_db.connect() as conn:
            return bool(
                await conn.scalar(
                    select(func.count()).where(
                        inbox.c.consumer == "api", inbox.c.event_id == late["id"]
                    )
                )
            )

    await eventually(handled)
    assert (await profile_row(api_db, user_id)).name is None


async def test_a_missing_reply_is_requested_again(
    edge: httpx.AsyncClient, auth_db: AsyncEngine
) -> None:
    user_id, _, _ = await sign_up(edge, "Lin")
    deletion_id = uuid.uuid4()
    # A deletion whose request got no reply (as if a participant had parked it):
    # recorded, and due for a re-request now.
    async with auth_db.begin() as conn:
        await conn.execute(
            insert(AccountDeletion).values(
                id=deletion_id,
                user_id=uuid.UUID(user_id),
                status="requested",
                requests=1,
                next_request_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    operator = await admin(edge)

    async def completed() -> dict[str, Any] | None:
        status: dict[str, Any] = (
            await edge.get(f"/v1/auth/deletions/{deletion_id}", headers=operator)
        ).json()
        return status if status["status"] == "completed" else None

    done = await eventually(completed)
    assert done["requests"] == 2  # the re-request got the reply
    async with auth_db.connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM users WHERE id = :id"), {"id": user_id})
            == 0
        )
