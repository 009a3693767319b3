"""API4:2023 Unrestricted Resource Consumption: bodies are capped at 1 MiB
at the edge, every page and every string a client sends is bounded (read
from the services' OpenAPI documents, so a new route is held to it too),
an order has a bounded number of lines and quantities, and a client past
its rate gets 429 with Retry-After."""

import uuid
from typing import Any

import httpx
import pytest

from tests.security.conftest import World
from tests.support.stack import new_key, new_user

DOCUMENTS = ("/_/api/openapi.json", "/_/auth/openapi.json", "/_/notify/openapi.json")


async def parameters(edge: httpx.AsyncClient) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for document in DOCUMENTS:
        spec = (await edge.get(document)).json()
        for path, operations in spec["paths"].items():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    found.append((path, parameter))
    return found


def schema_of(parameter: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = parameter.get("schema", {})
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return {**schema, **option}
    return schema


@pytest.mark.parametrize("path", ["/v1/products", "/v1/auth/signup", "/v1/webhooks"])
async def test_a_body_over_one_mebibyte_is_refused_at_the_edge(
    edge: httpx.AsyncClient, path: str
) -> None:
    response = await edge.post(
        path,
        content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "content_too_large"


async def test_every_page_size_has_a_ceiling(edge: httpx.AsyncClient) -> None:
    limits = [(path, schema_of(p)) for path, p in await parameters(edge) if p["name"] == "limit"]
    assert len(limits) >= 5
    for path, schema in limits:
        ceiling = 1000 if "/admin/" in path else 100  # the admin export pages by 1,000
        assert 0 < schema.get("maximum", 10**9) <= ceiling, path
    over = await edge.get("/v1/products", params={"limit": 100_000})
    assert over.status_code == 422


async def test_every_string_a_client_sends_in_a_query_is_bounded(edge: httpx.AsyncClient) -> None:
    strings = [
        (path, p["name"], schema_of(p))
        for path, p in await parameters(edge)
        if p["in"] == "query" and schema_of(p).get("type") == "string"
    ]
    assert strings
    for path, name, schema in strings:
        assert "maxLength" in schema or "pattern" in schema or "enum" in schema, (path, name)
    long = await edge.get("/v1/search/products", params={"q": "a" * 10_000})
    assert long.status_code in (414, 422)


async def test_an_order_has_bounded_lines_and_quantities(
    edge: httpx.AsyncClient, world: World
) -> None:
    many = {
        "items": [{"product_id": str(uuid.uuid4()), "quantity": 1} for _ in range(51)],
        "payment_method": "pm_card_visa",
    }
    assert (
        await edge.post("/v1/orders", json=many, headers=world.other | new_key())
    ).status_code == 422
    huge = {
        "items": [{"product_id": world.product, "quantity": 10**6}],
        "payment_method": "pm_card_visa",
    }
    assert (
        await edge.post("/v1/orders", json=huge, headers=world.other | new_key())
    ).status_code == 422


async def test_a_user_past_the_write_rate_gets_429_with_retry_after(
    edge: httpx.AsyncClient,
) -> None:
    user = await new_user(edge, "owasp-rate")
    statuses = []
    for _ in range(60):  # the user's write bucket holds 10 s of 120/min: 20
        response = await edge.post("/v1/webhooks", json={}, headers=user)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[0] == 422  # counted even when invalid
    assert statuses[-1] == 429, statuses
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["content-type"] == "application/problem+json"
