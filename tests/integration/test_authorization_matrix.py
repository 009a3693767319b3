"""Who may do what on the api: anonymous, the owner, another user, an admin.

Another user's resources answer 404 (ids cannot be probed); admin-only routes
answer 401 to anonymous callers and 403 to users."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.stack import EDGE, new_product, new_user
from tests.support.stack import admin as log_in_admin


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[dict[str, object]]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as edge:
        admin = await log_in_admin(edge)
        users = {name: await new_user(edge, f"mx-{name}") for name in ("owner", "other")}
        product = await new_product(edge, admin, stock=100)
        order = (
            await edge.post(
                "/v1/orders",
                json={
                    "items": [{"product_id": product, "quantity": 1}],
                    "payment_method": "pm_card_visa",
                },
                headers=users["owner"] | {"Idempotency-Key": uuid.uuid4().hex},
            )
        ).json()["id"]
        yield {
            "anonymous": {},
            "owner": users["owner"],
            "other": users["other"],
            "admin": admin,
            "product": product,
            "order": order,
        }


# (method, path, body, expected status for anonymous, owner, other, admin)
ROUTES = [
    ("GET", "/v1/orders/{order}", None, (401, 200, 404, 200)),
    ("GET", "/v1/me", None, (401, 200, 200, 200)),
    ("GET", "/v1/orders", None, (401, 200, 200, 200)),
    ("GET", "/v1/products/{product}", None, (200, 200, 200, 200)),
    ("POST", "/v1/products", {"sku": "x"}, (401, 403, 403, 422)),
    ("PATCH", "/v1/products/{product}", {"name": "Cup"}, (401, 403, 403, 200)),
    ("POST", "/v1/auth/keys/rotate", None, (401, 403, 403, None)),
    ("POST", "/v1/orders/{order}/cancel", None, (401, None, 404, None)),
]
CALLERS = ("anonymous", "owner", "other", "admin")


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROUTES)
async def test_authorization_matrix(
    world: dict[str, object],
    method: str,
    path: str,
    body: dict[str, str] | None,
    expected: tuple[int | None, ...],
) -> None:
    url = path.format(order=world["order"], product=world["product"])
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as edge:
        for caller, status in zip(CALLERS, expected, strict=True):
            if status is None:  # a state change the other rows rely on; covered elsewhere
                continue
            headers = world[caller]
            assert isinstance(headers, dict)
            response = await edge.request(method, url, json=body, headers=headers)
            assert response.status_code == status, f"{caller} {method} {url}: {response.text}"


async def test_other_users_never_see_the_owners_orders_in_lists(world: dict[str, object]) -> None:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as edge:
        headers = world["other"]
        assert isinstance(headers, dict)
        listed = (await edge.get("/v1/orders", headers=headers)).json()["items"]
    assert world["order"] not in {order["id"] for order in listed}
