"""API5:2023 Broken Function Level Authorization: every operator function
(read from the services' OpenAPI documents: the /admin/ routes, catalog
writes and key rotation) answers 401 to an anonymous caller and 403 to a
customer, and works for an admin."""

import re

import httpx

from tests.security.conftest import World

DOCUMENTS = ("/_/api/openapi.json", "/_/auth/openapi.json", "/_/notify/openapi.json")
WRITES_OF_OPERATORS = {
    ("post", "/v1/products"),
    ("patch", "/v1/products/{product_id}"),
    ("post", "/v1/auth/keys/rotate"),
}


async def operator_routes(edge: httpx.AsyncClient) -> list[tuple[str, str]]:
    routes = []
    for document in DOCUMENTS:
        for path, operations in (await edge.get(document)).json()["paths"].items():
            for method in operations:
                if "/admin/" in path or (method, path) in WRITES_OF_OPERATORS:
                    routes.append((method, path))
    return routes


async def test_operator_functions_refuse_anonymous_callers_and_customers(
    edge: httpx.AsyncClient, world: World
) -> None:
    routes = await operator_routes(edge)
    assert len(routes) >= 12  # sagas, exports, dead letters of each service, deliveries, catalog
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", template)
        path = path.replace("/export/00000000-0000-0000-0000-000000000000", "/export/products")
        anonymous = await edge.request(method, path, json={})
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        customer = await edge.request(method, path, json={}, headers=world.other)
        assert customer.status_code == 403, (method, path, customer.text)
        assert customer.json()["code"] == "forbidden", customer.text


async def test_an_admin_reaches_the_operator_reads(edge: httpx.AsyncClient, world: World) -> None:
    reads = [
        "/v1/admin/sagas",
        "/v1/admin/dead-letters",
        "/v1/auth/admin/dead-letters",
        "/v1/notifications/admin/deliveries",
        "/v1/notifications/admin/dead-letters",
    ]
    for path in reads:
        response = await edge.get(path, headers=world.admin)
        assert response.status_code == 200, (path, response.text)
