"""A span exported by a running service comes back from Jaeger's query API;
every service serves Prometheus metrics."""

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import new_traceparent, wait_for_trace
from tests.support import processes
from tests.support.stack import eventually

# Every Python process (one api instance of the two) and its port.
DIRECT_PORTS = {
    name: processes.port(name) for name in processes.names(kind="service") if name != "api-2"
}
# Each worker's consumer and the worker's port.
WORKERS = {
    name.removesuffix("-worker"): port
    for name, port in DIRECT_PORTS.items()
    if name.endswith("-worker")
}


async def test_span_of_a_request_is_returned_by_jaeger(
    edge: httpx.AsyncClient, jaeger: httpx.AsyncClient
) -> None:
    traceparent, trace_id = new_traceparent()
    response = await edge.get(f"/v1/products/{uuid.uuid4()}", headers={"traceparent": traceparent})
    assert response.status_code == 404

    def servers(trace: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            span
            for span in trace["spans"]
            if any(tag["key"] == "span.kind" and tag["value"] == "server" for tag in span["tags"])
        ]

    # Spans arrive in batches, children first: wait for the request's own.
    async def with_server_span() -> dict[str, Any] | None:
        trace = await wait_for_trace(jaeger, trace_id)
        return trace if servers(trace) else None

    trace = await eventually(with_server_span, timeout_s=30)
    assert trace["traceID"] == trace_id
    server_spans = servers(trace)
    tags = {tag["key"]: tag["value"] for tag in server_spans[0]["tags"]}
    assert tags.get("http.response.status_code", tags.get("http.status_code")) == 404
    services = (await jaeger.get("/api/services")).json()["data"]
    assert "api" in services


@pytest.mark.parametrize("service", sorted(DIRECT_PORTS))
async def test_every_service_serves_prometheus_metrics(service: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        await client.get(f"http://127.0.0.1:{DIRECT_PORTS[service]}/healthz")
        response = await client.get(f"http://127.0.0.1:{DIRECT_PORTS[service]}/metrics")
    assert response.status_code == 200
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in response.text


@pytest.mark.parametrize("consumer", sorted(WORKERS))
async def test_a_worker_exposes_its_consumer_lag_and_dead_letters(consumer: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{WORKERS[consumer]}/metrics")).text
    assert f'tenx_consumer_lag{{consumer="{consumer}",partition="0",' in text
    assert f'tenx_dead_letters_parked{{consumer="{consumer}"}}' in text


# What each process's /metrics must carry (issue: RED, pool, outbox, lag, dead
# letters, sagas, cache, rate limits, freshness, dropped spans).
FAMILIES = {
    processes.port("api-1"): (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        'tenx_db_pool_connections{engine="primary",state="checked_out"}',
        "tenx_db_pool_size",
        'tenx_cache_lookups_total{cache="api:cache",result="hit"}',
        "tenx_spans_dropped_total",
        "tenx_span_queue_size",
    ),
    processes.port("api-worker"): (
        'tenx_outbox_depth{table="outbox"}',
        'tenx_outbox_oldest_age_seconds{table="outbox"}',
        'tenx_consumer_lag{consumer="api"',
        'tenx_dead_letters_parked{consumer="api"}',
        "tenx_saga_transitions_total",
        "tenx_db_pool_connections",
    ),
    processes.port("search-indexer"): (
        "tenx_search_index_freshness_seconds_bucket",
        'tenx_consumer_lag{consumer="search-indexer"',
        'tenx_outbox_depth{table="outbox"}',
    ),
}


@pytest.mark.parametrize("port", sorted(FAMILIES))
async def test_the_platform_metrics_are_on_metrics(edge: httpx.AsyncClient, port: int) -> None:
    await edge.get(f"/v1/products/{uuid.uuid4()}")  # a cache lookup, a request
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    missing = [family for family in FAMILIES[port] if family not in text]
    assert not missing, missing
    dropped = [line for line in text.splitlines() if line.startswith("tenx_spans_dropped_total")]
    assert all(line.endswith(" 0.0") for line in dropped), dropped
