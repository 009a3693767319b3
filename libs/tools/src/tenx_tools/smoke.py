"""A smoke test of a running platform, through its public HTTP API only:

    python -m tenx_tools.smoke [BASE_URL]                (make smoke URL=...)

BASE_URL (default http://127.0.0.1:8080, the local edge; a cluster's Ingress
through kubectl port-forward) and the admin's password in
``TENX_SMOKE_ADMIN_PASSWORD`` (the bootstrap admin, admin@tenx.local unless
``TENX_SMOKE_ADMIN_EMAIL`` says otherwise). It makes a product as the admin,
signs a customer up, places an order with an Idempotency-Key (and again: the
same order), waits until the saga has confirmed it, until the product is
searchable, and until the customer's feed holds the confirmation; each step
prints a line, and the first that fails exits 1.
"""

import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class SmokeError(Exception):
    pass


def _ok(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise SmokeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code}, wanted {status}: {response.text[:300]}"
        )
    return response.json()


def _until(what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise SmokeError(f"{what}: not within {timeout_s:.0f} s")


def run(client: httpx.Client, admin_email: str, admin_password: str, timeout_s: float) -> None:
    def step(text: str) -> None:
        print(f"smoke: {text}", flush=True)

    token = _ok(
        client.post("/v1/auth/token", json={"email": admin_email, "password": admin_password}), 200
    )["access_token"]
    admin = {"Authorization": f"Bearer {token}"}
    sku = f"SMOKE-{uuid.uuid4().hex[:10]}"
    product = _ok(
        client.post(
            "/v1/products",
            headers=admin,
            json={
                "sku": sku,
                "name": f"Smoke test teapot {sku}",
                "description": "Made by the smoke test.",
                "category": "kitchen",
                "price_cents": 1999,
                "currency": "EUR",
                "stock": 5,
            },
        ),
        201,
    )
    step(f"admin signed in; product {product['id']} made")

    email = f"smoke-{uuid.uuid4().hex[:10]}@example.com"
    password = secrets.token_urlsafe(18)
    _ok(
        client.post("/v1/auth/signup", json={"email": email, "password": password, "name": "S"}),
        201,
    )
    token = _ok(client.post("/v1/auth/token", json={"email": email, "password": password}), 200)[
        "access_token"
    ]
    customer = {"Authorization": f"Bearer {token}"}
    step(f"customer {email} signed up and in")

    order = {
        "items": [{"product_id": product["id"], "quantity": 2}],
        "payment_method": "pm_card_visa",
    }
    key = {"Idempotency-Key": uuid.uuid4().hex}
    placed = _ok(client.post("/v1/orders", json=order, headers=customer | key), 201)
    again = _ok(client.post("/v1/orders", json=order, headers=customer | key), 201)
    if again["id"] != placed["id"]:
        raise SmokeError("the same Idempotency-Key placed a second order")
    step(f"order {placed['id']} placed (and replayed by its key: the same order)")

    def confirmed() -> dict[str, Any] | None:
        found: dict[str, Any] = _ok(client.get(f"/v1/orders/{placed['id']}", headers=customer), 200)
        if found["status"] == "cancelled":
            raise SmokeError(f"the order was cancelled: {found}")
        return found if found["status"] == "confirmed" else None

    _until("the order confirmed by the saga", confirmed, timeout_s)
    step("order confirmed (payment authorized by the saga)")

    def searchable() -> list[Any] | None:
        hits = _ok(client.get("/v1/search/products", params={"q": sku}), 200)["items"]
        return [hit for hit in hits if hit["id"] == product["id"] and hit["stock"] == 3] or None

    _until("the product searchable with its new stock", searchable, timeout_s)
    step(
        "product searchable, stock 5 - 2 = 3 (catalog -> Kafka -> search-indexer -> Elasticsearch)"
    )

    def notified() -> list[Any] | None:
        feed = _ok(client.get("/v1/notifications", headers=customer), 200)["items"]
        return [n for n in feed if placed["id"] in str(n)] or None

    _until("the confirmation in the customer's feed", notified, timeout_s)
    step("confirmation in the customer's notification feed (orders -> Kafka -> notify)")


def main() -> None:
    base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    password = os.environ.get("TENX_SMOKE_ADMIN_PASSWORD", "")
    if not password:
        raise SystemExit("smoke: set TENX_SMOKE_ADMIN_PASSWORD to the admin's password")
    email = os.environ.get("TENX_SMOKE_ADMIN_EMAIL", "admin@tenx.local")
    timeout_s = float(os.environ.get("TENX_SMOKE_TIMEOUT_S", "60"))
    with httpx.Client(base_url=base_url, timeout=10) as client:
        try:
            run(client, email, password, timeout_s)
        except (SmokeError, httpx.HTTPError) as exc:
            print(f"smoke: FAILED: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc
    print(f"smoke: passed against {base_url}")


if __name__ == "__main__":
    main()
