"""notify on the real stack: emails read back from the mail catcher, the in-app
feed and its live stream, preferences, one notification per event whatever is
redelivered or killed."""

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import standardwebhooks
from aiokafka import AIOKafkaProducer
from cryptography.fernet import Fernet
from sqlalchemy import text

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_notify.settings import Settings as NotifySettings
from tests.support.stack import (
    MAILPIT,
    STRONG,
    admin,
    eventually,
    log_in,
    new_key,
    new_product,
    order_body,
    pid_of,
    stack,
)
from tests.support.webhook_receiver import receiving


@pytest.fixture
async def mailpit() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=MAILPIT, timeout=10) as client:
        yield client


async def mails_to(mailpit: httpx.AsyncClient, address: str) -> list[dict[str, Any]]:
    found = await mailpit.get("/api/v1/search", params={"query": f"to:{address}", "limit": 200})
    found.raise_for_status()
    messages: list[dict[str, Any]] = found.json()["messages"]
    return messages


async def sign_up(edge: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"n-{uuid.uuid4().hex[:10]}@example.com"
    created = await edge.post(
        "/v1/auth/signup", json={"email": email, "password": STRONG, "name": "Noa"}
    )
    assert created.status_code == 201, created.text
    return email, await log_in(edge, email, STRONG)


async def order(
    edge: httpx.AsyncClient, user: dict[str, str], product: str, card: str = "pm_card_visa"
) -> str:
    placed = await edge.post(
        "/v1/orders", json=order_body(product, 1, card), headers={**user, **new_key()}
    )
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


async def test_signing_up_sends_one_verification_email(
    edge: httpx.AsyncClient, mailpit: httpx.AsyncClient
) -> None:
    email, _ = await sign_up(edge)
    [mail] = await eventually(lambda: mails_to(mailpit, email))
    assert mail["Subject"] == "Confirm your email address"
    body = (await mailpit.get(f"/api/v1/message/{mail['ID']}")).json()
    assert "/verify-email?token=" in body["Text"]
    assert "/verify-email?token=" in body["HTML"]
    await asyncio.sleep(2)
    assert len(await mails_to(mailpit, email)) == 1


async def test_a_confirmed_order_is_one_email_and_one_feed_entry(
    edge: httpx.AsyncClient, mailpit: httpx.AsyncClient
) -> None:
    email, user = await sign_up(edge)
    product = await new_product(edge, await admin(edge), stock=5)
    order_id = await order(edge, user, product)

    async def confirmation() -> list[dict[str, Any]]:
        return [
            m for m in await mails_to(mailpit, email) if m["Subject"] == "Your order is confirmed"
        ]

    [mail] = await eventually(confirmation)
    body = (await mailpit.get(f"/api/v1/message/{mail['ID']}")).json()
    assert order_id in body["Text"]
    assert "/v1/notifications/preferences" in body["Text"]

    async def feed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await edge.get("/v1/notifications", headers=user)).json()[
            "items"
        ]
        return items

    [entry] = await eventually(feed)
    assert (entry["kind"], entry["data"]["order_id"], entry["read_at"]) == (
        "order.confirmed",
        order_id,
        None,
    )
    _, stranger = await sign_up(edge)
    path = f"/v1/notifications/{entry['id']}/read"
    assert (await edge.post(path, headers=stranger)).status_code == 404
    assert (await edge.post(path, headers=user)).status_code == 204
    assert (await feed())[0]["read_at"] is not None


async def test_an_order_confirmed_before_its_customer_is_known_is_still_emailed(
    edge: httpx.AsyncClient, mailpit: httpx.AsyncClient
) -> None:
    # auth.users and orders.orders are two topics: nothing orders a sign-up's
    # event before the confirmation of the order placed a second later. Hold
    # the sign-up back (auth's relay stopped with its worker) so the
    # confirmation arrives first.
    product = await new_product(edge, await admin(edge), stock=5)
    await stack("stop", "auth-worker")
    try:
        email, user = await sign_up(edge)
        order_id = await order(edge, user, product)

        async def in_feed() -> bool:
            feed = (await edge.get("/v1/notifications", headers=user)).json()["items"]
            return any(item["data"]["order_id"] == order_id for item in feed)

        await eventually(in_feed)  # notify has handled the confirmation
        assert await mails_to(mailpit, email) == []  # no address yet to send it to
    finally:
        await stack("start", "auth-worker")

    async def both() -> list[str] | None:
        subjects = sorted(m["Subject"] for m in await mails_to(mailpit, email))
        return subjects if len(subjects) >= 2 else None

    subjects = await eventually(both)
    await asyncio.sleep(2)  # and nothing more after that
    assert sorted(m["Subject"] for m in await mails_to(mailpit, email)) == subjects
    assert subjects.count("Your order is confirmed") == 1, subjects
    assert len(subjects) == 2, subjects


async def test_preferences_choose_the_channels(
    edge: httpx.AsyncClient, mailpit: httpx.AsyncClient
) -> None:
    email, user = await sign_up(edge)
    assert (await edge.get("/v1/notifications/preferences", headers=user)).json()["email"] is True
    for bad in (
        {"email": "no", "in_app": True},
        {"email": False},
        {"email": False, "in_app": True, "sms": True},
    ):
        refused = await edge.put("/v1/notifications/preferences", json=bad, headers=user)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
    saved = await edge.put(
        "/v1/notifications/preferences", json={"email": False, "in_app": True}, headers=user
    )
    assert saved.json()["email"] is False
    product = await new_product(edge, await admin(edge), stock=5)
    order_id = await order(edge, user, product)

    async def in_feed() -> bool:
        items = (await edge.get("/v1/notifications", headers=user)).json()["items"]
        return any(item["data"]["order_id"] == order_id for item in items)

    await eventually(in_feed)
    await asyncio.sleep(2)
    subjects = [m["Subject"] for m in await mails_to(mailpit, email)]
    assert subjects == ["Confirm your email address"]  # no order email


async def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append(current)
            current = {}
            if len(events) == count:
                return events
    raise AssertionError("the stream ended")


async def test_a_stream_that_reconnects_with_last_event_id_misses_nothing(
    edge: httpx.AsyncClient,
) -> None:
    _, user = await sign_up(edge)
    product = await new_product(edge, await admin(edge), stock=5)
    async with edge.stream("GET", "/v1/notifications/stream", headers=user) as live:
        assert live.headers["content-type"].startswith("text/event-stream")
        first_order = await order(edge, user, product)
        [first] = await asyncio.wait_for(read_events(live, 1), 30)
    assert first["data"]["data"]["order_id"] == first_order
    # While disconnected: one order confirmed, one cancelled by its customer.
    second_order = await order(edge, user, product)
    third_order = await order(edge, user, product, card="pm_card_chargeDeclined")

    async def both_in_feed() -> bool:
        items = (await edge.get("/v1/notifications", headers=user)).json()["items"]
        return len(items) == 3

    await eventually(both_in_feed)
    resumed_headers = {**user, "Last-Event-ID": first["id"]}
    async with edge.stream("GET", "/v1/notifications/stream", headers=resumed_headers) as resumed:
        missed = await asyncio.wait_for(read_events(resumed, 2), 30)
    assert {e["data"]["data"]["order_id"] for e in missed} == {second_order, third_order}
    assert [int(e["id"]) for e in missed] == sorted(int(e["id"]) for e in missed)
    bad = await edge.get("/v1/notifications/stream", headers={**user, "Last-Event-ID": "x"})
    assert bad.status_code == 400


async def test_a_redelivered_event_and_a_killed_worker_still_send_one_of_each(
    edge: httpx.AsyncClient, mailpit: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    email, user = await sign_up(edge)
    product = await new_product(edge, await admin(edge), stock=20)
    async with receiving() as receiver:
        hook = await edge.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["order.confirmed"]}, headers=user
        )
        assert hook.status_code == 201
        await one_of_each_after_a_kill(edge, mailpit, api_settings, email, user, product, receiver)


async def one_of_each_after_a_kill(
    edge: httpx.AsyncClient,
    mailpit: httpx.AsyncClient,
    api_settings: ApiSettings,
    email: str,
    user: dict[str, str],
    product: str,
    receiver: Any,
) -> None:
    orders = [await order(edge, user, product) for _ in range(8)]

    async def confirmations(at_least: int) -> list[dict[str, Any]] | None:
        found = [
            m for m in await mails_to(mailpit, email) if m["Subject"] == "Your order is confirmed"
        ]
        return found if len(found) >= at_least else None

    await eventually(lambda: confirmations(1))
    os.kill(pid_of("notify-worker"), signal.SIGKILL)  # in the middle of sending them
    await stack("up")
    await eventually(lambda: confirmations(len(orders)), timeout_s=180)

    # The same OrderConfirmed again, as a relay that died before marking sends it:
    # the stored CloudEvent, with its id, from the api's outbox.
    engine = primary_engine(api_settings)
    async with engine.connect() as conn:
        payload = await conn.scalar(
            text("SELECT payload FROM outbox WHERE key = :k AND type = :t"),
            {"k": orders[0], "t": "tenx.orders.order.confirmed.v1"},
        )
    await engine.dispose()
    producer = AIOKafkaProducer(bootstrap_servers=api_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            "orders.orders", key=orders[0].encode(), value=json.dumps(payload).encode()
        )
    finally:
        await producer.stop()
    await asyncio.sleep(3)
    mails = await confirmations(len(orders))
    assert mails is not None
    # One message per order and channel. A SIGKILL inside the send window (the
    # server accepted it, the outcome not yet committed) sends that same message
    # again: a copy under the same Message-ID / webhook-id, which a receiver drops.
    emailed: dict[str, set[str]] = {}
    for mail in mails:
        body = (await mailpit.get(f"/api/v1/message/{mail['ID']}")).json()
        owner = next(o for o in orders if o in body["Text"])
        emailed.setdefault(owner, set()).add(body["MessageID"])
    assert sorted(emailed) == sorted(orders)
    assert all(len(ids) == 1 for ids in emailed.values())
    feed = (await edge.get("/v1/notifications", params={"limit": 100}, headers=user)).json()[
        "items"
    ]
    assert sorted(item["data"]["order_id"] for item in feed) == sorted(orders)  # exactly one
    hooked: dict[str, set[str]] = {}
    for request in receiver.received:
        if not request.body:
            continue  # cut off when the worker was killed: not a delivery
        owner = json.loads(request.body)["data"]["order_id"]
        hooked.setdefault(owner, set()).add(request.headers["webhook-id"])
    assert sorted(hooked) == sorted(orders)
    assert all(len(ids) == 1 for ids in hooked.values())


async def stored_encrypted(webhook_id: str, secret: str) -> None:
    settings = NotifySettings()
    engine = primary_engine(settings)
    async with engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT secret FROM webhooks WHERE id = :id"), {"id": uuid.UUID(webhook_id)}
        )
    await engine.dispose()
    assert secret not in stored
    key = settings.secret_encryption_key.get_secret_value()
    assert Fernet(key).decrypt(stored.encode()).decode() == secret


async def test_a_webhook_gets_each_order_event_once_signed_and_retried(
    edge: httpx.AsyncClient,
) -> None:
    _, user = await sign_up(edge)
    product = await new_product(edge, await admin(edge), stock=5)
    async with receiving() as receiver:
        receiver.answers = [500, 503]  # the first two attempts fail
        created = await edge.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["*"]}, headers=user
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")
        await stored_encrypted(hook["id"], hook["secret"])
        order_id = await order(edge, user, product)

        async def delivered() -> bool:
            return any(
                r.headers.get("webhook-id") and b"order.confirmed" in r.body
                for r in receiver.received[2:]
            )

        await eventually(delivered, timeout_s=60)
        await asyncio.sleep(2)  # nothing more comes
    verifier = standardwebhooks.Webhook(hook["secret"])
    assert len(receiver.received) == 3  # two refused, one accepted
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # the same message
    for request in receiver.received:
        event = verifier.verify(request.body, request.headers)
        assert (event["type"], event["data"]["order_id"]) == ("order.confirmed", order_id)
    log = await edge.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=user)
    [entry] = log.json()["items"]
    assert entry["status"] == "sent"
    assert [(a["outcome"], a["status_code"]) for a in entry["attempts"]] == [
        ("retried", 500),
        ("retried", 503),
        ("sent", 200),
    ]
    _, stranger = await sign_up(edge)
    hidden = await edge.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=stranger)
    assert hidden.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x", "events": ["*"]},
        {"url": "not a url", "events": ["*"]},
        {"url": "https://example.com/x", "events": []},
        {"url": "https://example.com/x", "events": ["order.shipped"]},
        {"url": "https://example.com/x", "events": ["*", "*"]},
        {"url": "https://example.com/x", "events": ["*"], "secret": "mine"},
    ],
)
async def test_bad_webhooks_are_refused(edge: httpx.AsyncClient, body: dict[str, Any]) -> None:
    _, user = await sign_up(edge)
    refused = await edge.post("/v1/webhooks", json=body, headers=user)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await edge.get("/v1/webhooks", headers=user)).json()["items"] == []


async def test_a_gone_endpoint_is_dead_at_once_and_operators_send_it_again(
    edge: httpx.AsyncClient,
) -> None:
    _, user = await sign_up(edge)
    operator = await admin(edge)
    product = await new_product(edge, operator, stock=5)
    async with receiving() as receiver:
        receiver.answers = [302, 410]  # a redirect (not followed), then "gone"
        created = await edge.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["order.confirmed"]}, headers=user
        )
        hook = created.json()
        await order(edge, user, product)
        log_path = f"/v1/webhooks/{hook['id']}/deliveries"

        async def entry(status: str) -> dict[str, Any] | None:
            items = (await edge.get(log_path, headers=user)).json()["items"]
            return items[0] if items and items[0]["status"] == status else None

        dead = await eventually(lambda: entry("dead"), timeout_s=60)
        assert [(a["outcome"], a["status_code"]) for a in dead["attempts"]] == [
            ("retried", 302),
            ("dead", 410),
        ]
        assert len(receiver.received) == 2  # the redirect's target was never called
        listed = await edge.get(
            "/v1/notifications/admin/deliveries", params={"status": "dead"}, headers=operator
        )
        [parked] = [d for d in listed.json()["items"] if d["channel"] == f"webhook:{hook['id']}"]
        assert "410" in parked["last_error"]
        path = f"/v1/notifications/admin/deliveries/{parked['id']}/retry"
        assert (await edge.post(path, headers=user)).status_code == 403
        assert (await edge.post(path, headers=operator)).status_code == 202
        sent = await eventually(lambda: entry("sent"), timeout_s=30)
    assert sent["attempts"][-1]["status_code"] == 200
    assert len(receiver.received) == 3
