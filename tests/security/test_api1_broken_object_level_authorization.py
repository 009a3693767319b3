"""API1:2023 Broken Object Level Authorization: a user reaches only their own
objects. Another user's object answers 404, the same as one that does not
exist, so ids cannot be probed; lists never hold another user's objects."""

import uuid

import httpx

from tests.security.conftest import World
from tests.support.stack import eventually, new_user


async def test_another_users_order_is_not_found(edge: httpx.AsyncClient, world: World) -> None:
    path = f"/v1/orders/{world.order}"
    assert (await edge.get(path, headers=world.owner)).status_code == 200
    theirs = await edge.get(path, headers=world.other)
    missing = await edge.get(f"/v1/orders/{uuid.uuid4()}", headers=world.other)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["code"] == missing.json()["code"]
    cancel = await edge.post(f"{path}/cancel", headers=world.other)
    assert cancel.status_code == 404
    assert (await edge.get(path, headers=world.owner)).json()["status"] != "cancelled"


async def test_lists_hold_only_the_callers_objects(edge: httpx.AsyncClient, world: World) -> None:
    orders = (await edge.get("/v1/orders", headers=world.other)).json()["items"]
    assert world.order not in {order["id"] for order in orders}
    hooks = (await edge.get("/v1/webhooks", headers=world.other)).json()["items"]
    assert world.webhook not in {hook["id"] for hook in hooks}
    feed = (await edge.get("/v1/notifications", headers=world.other)).json()["items"]
    assert world.order not in str(feed)


async def test_another_users_webhook_cannot_be_read_or_deleted(
    edge: httpx.AsyncClient, world: World
) -> None:
    deliveries = await edge.get(f"/v1/webhooks/{world.webhook}/deliveries", headers=world.other)
    assert deliveries.status_code == 404
    deleted = await edge.delete(f"/v1/webhooks/{world.webhook}", headers=world.other)
    assert deleted.status_code == 404
    mine = (await edge.get("/v1/webhooks", headers=world.owner)).json()["items"]
    assert world.webhook in {hook["id"] for hook in mine}


async def test_another_users_notification_cannot_be_marked_read(
    edge: httpx.AsyncClient, world: World
) -> None:
    async def owners_feed() -> list[dict[str, object]]:
        items: list[dict[str, object]] = (
            await edge.get("/v1/notifications", headers=world.owner)
        ).json()["items"]
        return items

    feed = await eventually(owners_feed, timeout_s=60)
    target = feed[0]["id"]
    refused = await edge.post(f"/v1/notifications/{target}/read", headers=world.other)
    assert refused.status_code == 404
    after = {item["id"]: item for item in await owners_feed()}
    assert after[target].get("read_at") is None


async def test_another_users_deletion_request_is_not_found(
    edge: httpx.AsyncClient, world: World
) -> None:
    leaving = await new_user(edge, "owasp-leaving")
    requested = await edge.delete("/v1/auth/me", headers=leaving)
    assert requested.status_code == 202, requested.text
    path = f"/v1/auth/deletions/{requested.json()['deletion_id']}"
    assert (await edge.get(path, headers=world.admin)).status_code == 200  # operators see it
    assert (await edge.get(path, headers=world.other)).status_code == 404
