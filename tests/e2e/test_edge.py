"""The edge reaches every service, routes by path, and tags every request."""

import asyncio

import httpx
import pytest

from tests.e2e.conftest import new_traceparent, trace_instances, trace_services, wait_for_trace

SERVICES = {
    "api": "Tenx API",
    "auth": "Tenx Auth",
    "notify": "Tenx Notify",
    "search-indexer": "Tenx Search Indexer",
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_edge_reaches_each_service(edge: httpx.AsyncClient, service: str) -> None:
    ready = await edge.get(f"/_/{service}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert set(ready.json()["checks"].values()) == {"up"}
    openapi = await edge.get(f"/_/{service}/openapi.json")
    assert openapi.json()["info"]["title"] == SERVICES[service]


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/v1/auth/token", "auth"),
        ("/.well-known/jwks.json", "auth"),
        ("/v1/notifications", "notify"),
        ("/v1/webhooks", "notify"),
        ("/v1/products", "api"),
        ("/v1/orders/123", "api"),
    ],
)
async def test_paths_are_routed_to_their_service(
    edge: httpx.AsyncClient, jaeger: httpx.AsyncClient, path: str, service: str
) -> None:
    # The trace of the request, found in Jaeger, names the service that answered.
    traceparent, trace_id = new_traceparent()
    response = await edge.get(path, headers={"traceparent": traceparent})
    assert response.status_code < 500
    trace = await wait_for_trace(jaeger, trace_id)
    assert trace_services(trace) == {service}


async def test_both_api_instances_serve_behind_one_upstream(
    edge: httpx.AsyncClient, jaeger: httpx.AsyncClient
) -> None:
    trace_ids = []
    for _ in range(6):
        traceparent, trace_id = new_traceparent()
        await edge.get("/v1/products", headers={"traceparent": traceparent})
        trace_ids.append(trace_id)
    traces = await asyncio.gather(*(wait_for_trace(jaeger, tid) for tid in trace_ids))
    instances = set().union(*(trace_instances(trace) for trace in traces))
    assert {instance.rsplit(":", 1)[1] for instance in instances} == {"8000", "8010"}


async def test_request_id_is_set_kept_and_passed_to_the_service(edge: httpx.AsyncClient) -> None:
    generated = await edge.get("/v1/products/unknown")
    request_id = generated.headers["x-request-id"]
    assert len(request_id) == 32
    assert generated.json()["request_id"] == request_id  # the service saw the same id
    assert generated.headers.get_list("x-request-id") == [request_id]

    kept = await edge.get("/v1/products/unknown", headers={"X-Request-Id": "client-req-1"})
    assert kept.headers["x-request-id"] == "client-req-1"
    assert kept.json()["request_id"] == "client-req-1"


async def test_unknown_path_is_a_problem_from_the_edge(edge: httpx.AsyncClient) -> None:
    response = await edge.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_body_over_the_limit_is_refused_at_the_edge(edge: httpx.AsyncClient) -> None:
    response = await edge.post(
        "/v1/orders", content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "content_too_large"


async def test_method_not_allowed_is_a_problem(edge: httpx.AsyncClient) -> None:
    response = await edge.post("/_/api/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"
