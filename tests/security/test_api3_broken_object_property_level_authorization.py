"""API3:2023 Broken Object Property Level Authorization: a client cannot set
a property it does not own (roles, verification, prices, totals, statuses,
versions, ids, a webhook's secret): every body model forbids unknown fields,
so such a request is a 422 problem that changes nothing; and no response
exposes a property the caller must not see (password hashes, secrets)."""

import uuid
from typing import Any

import httpx
import pytest

from tests.security.conftest import World
from tests.support.stack import STRONG, bearer, new_key, order_body


def refused_field(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert any(e["loc"][-1] == field and e["type"] == "extra_forbidden" for e in errors), errors


@pytest.mark.parametrize(
    ("field", "value"),
    [("roles", ["admin"]), ("email_verified", True), ("id", str(uuid.uuid4()))],
)
async def test_sign_up_cannot_grant_itself_anything(
    edge: httpx.AsyncClient, field: str, value: Any
) -> None:
    email = f"owasp-mass-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": STRONG, "name": "M", field: value}
    refused_field(await edge.post("/v1/auth/signup", json=body), field)
    # Nothing was made: the same email signs up cleanly, as a plain user.
    clean = {key: value for key, value in body.items() if key != field}
    made = await edge.post("/v1/auth/signup", json=clean)
    assert made.status_code == 201, made.text
    token = (await edge.post("/v1/auth/token", json={"email": email, "password": STRONG})).json()
    me = (await edge.get("/v1/auth/me", headers=bearer(token["access_token"]))).json()
    assert me["roles"] == ["user"]
    assert me["email_verified"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "confirmed"),
        ("total_cents", 1),
        ("price_cents", 1),
        ("user_id", str(uuid.uuid4())),
    ],
)
async def test_an_order_cannot_set_its_own_status_or_price(
    edge: httpx.AsyncClient, world: World, field: str, value: Any
) -> None:
    before = (await edge.get("/v1/orders", headers=world.owner)).json()["items"]
    body = order_body(world.product) | {field: value}
    refused_field(await edge.post("/v1/orders", json=body, headers=world.owner | new_key()), field)
    after = (await edge.get("/v1/orders", headers=world.owner)).json()["items"]
    assert [o["id"] for o in after] == [o["id"] for o in before]


async def test_an_order_item_cannot_carry_its_own_price(
    edge: httpx.AsyncClient, world: World
) -> None:
    body = {
        "items": [{"product_id": world.product, "quantity": 1, "unit_price_cents": 1}],
        "payment_method": "pm_card_visa",
    }
    refused_field(
        await edge.post("/v1/orders", json=body, headers=world.owner | new_key()),
        "unit_price_cents",
    )


@pytest.mark.parametrize(
    ("field", "value"), [("version", 999), ("id", str(uuid.uuid4())), ("sku", "X")]
)
async def test_a_product_update_cannot_touch_its_identity_or_version(
    edge: httpx.AsyncClient, world: World, field: str, value: Any
) -> None:
    path = f"/v1/products/{world.product}"
    before = (await edge.get(path)).json()
    refused_field(await edge.patch(path, json={field: value}, headers=world.admin), field)
    assert (await edge.get(path, headers=world.admin)).json()["version"] == before["version"]


@pytest.mark.parametrize(("field", "value"), [("roles", ["admin"]), ("email", "x@example.com")])
async def test_a_profile_update_cannot_change_roles_or_email(
    edge: httpx.AsyncClient, world: World, field: str, value: Any
) -> None:
    refused_field(await edge.patch("/v1/me", json={field: value}, headers=world.other), field)


async def test_a_webhook_secret_is_the_services_and_shown_once(
    edge: httpx.AsyncClient, world: World
) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["*"], "secret": "whsec_mine"}
    refused_field(await edge.post("/v1/webhooks", json=body, headers=world.other), "secret")
    listed = (await edge.get("/v1/webhooks", headers=world.owner)).json()["items"]
    assert listed
    assert all("secret" not in hook for hook in listed)


async def test_no_response_carries_a_password_hash_or_a_key(
    edge: httpx.AsyncClient, world: World
) -> None:
    bodies = [
        (await edge.get("/v1/auth/me", headers=world.owner)).text,
        (await edge.get("/v1/me", headers=world.owner)).text,
        (await edge.get(f"/v1/orders/{world.order}", headers=world.owner)).text,
        (await edge.get("/.well-known/jwks.json")).text,
    ]
    for text in bodies:
        for leak in ("password", "argon2", "private", '"d":', "secret"):
            assert leak not in text, (leak, text[:200])


@pytest.mark.parametrize("value", [False, True, "5", 2.5])
async def test_a_number_is_a_number(edge: httpx.AsyncClient, world: World, value: Any) -> None:
    """No coercion: a boolean, a string or a fraction is not a stock count
    (found by make fuzz: `"stock": false` made a product with stock 0)."""
    path = f"/v1/products/{world.product}"
    refused = await edge.patch(path, json={"stock": value}, headers=world.admin)
    assert refused.status_code == 422, refused.text
    body = order_body(world.product) | {"items": [{"product_id": world.product, "quantity": value}]}
    assert (
        await edge.post("/v1/orders", json=body, headers=world.other | new_key())
    ).status_code == 422
