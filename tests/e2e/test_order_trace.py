"""One order placed through the edge is one trace in Jaeger: the request in
api (with its SQL and Redis spans), the outbox relay publishing its events, the
saga's step in the worker, the relay publishing OrderConfirmed, notify
consuming it and sending the email, and the search-indexer indexing the order
and the stock change; every span's parent is in the trace."""

import asyncio
import sys
from typing import Any

import httpx

from tests.e2e.conftest import new_traceparent, wait_for_trace
from tests.support.stack import admin, eventually, new_key, new_product, new_user, order_body


def span_names(trace: dict[str, Any]) -> set[tuple[str, str]]:
    services = {pid: process["serviceName"] for pid, process in trace["processes"].items()}
    return {(services[span["processID"]], span["operationName"]) for span in trace["spans"]}


async def test_an_order_is_one_trace_from_the_edge_to_its_confirmation(
    edge: httpx.AsyncClient, jaeger: httpx.AsyncClient
) -> None:
    operator = await admin(edge)
    user = await new_user(edge)
    product = await new_product(edge, operator, stock=3)
    traceparent, trace_id = new_traceparent()
    placed = await edge.post(
        "/v1/orders",
        json=order_body(product),
        headers={**user, **new_key(), "traceparent": traceparent},
    )
    assert placed.status_code == 201, placed.text
    path = f"/v1/orders/{placed.json()['id']}"

    async def confirmed() -> bool:
        return bool((await edge.get(path, headers=user)).json()["status"] == "confirmed")

    await eventually(confirmed)
    wanted = {
        ("api", "POST /v1/orders"),
        ("api-relay", "orders.orders publish"),  # OrderPlaced, then OrderConfirmed
        ("api-relay", "catalog.products publish"),  # StockChanged
        ("api-worker", "saga order authorize_payment"),
        ("notify-worker", "orders.orders process"),  # OrderConfirmed, consumed
        ("notify-worker", "deliver email"),  # the confirmation email, sent later
        ("search-indexer", "orders.orders process"),  # the order's document
        ("search-indexer", "catalog.products process"),  # the stock change
        ("api", "SELECT tenx_api"),  # SQL (the placement: one call of place_order)
        ("api", "EVAL"),  # Redis (the rate limiter's script)
    }

    # Each process exports its spans in batches (every 500 ms), children before
    # their parents: the trace is read once it has every wanted span and has
    # not grown for two seconds.
    seen = {"count": -1, "since": 0.0}

    async def complete() -> dict[str, Any] | None:
        trace = await wait_for_trace(jaeger, trace_id)
        now = asyncio.get_running_loop().time()
        if len(trace["spans"]) != seen["count"]:
            seen.update(count=len(trace["spans"]), since=now)
            return None
        return trace if wanted <= span_names(trace) and now - seen["since"] >= 2.0 else None

    trace = await eventually(complete, timeout_s=60)
    spans = {span["spanID"]: span for span in trace["spans"]}
    parents = {
        span["spanID"]: next(
            (ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"), None
        )
        for span in trace["spans"]
    }
    roots = [span_id for span_id, parent in parents.items() if parent not in spans]
    assert len(roots) == 1  # the request; its parent is the caller's traceparent
    assert spans[roots[0]]["operationName"] == "POST /v1/orders"
    publishes = [s for s in trace["spans"] if s["operationName"] == "orders.orders publish"]
    assert len(publishes) == 2
    step = next(s for s in trace["spans"] if s["operationName"] == "saga order authorize_payment")
    # OrderConfirmed was written inside the saga's step: its publish is the step's child.
    assert {parents[p["spanID"]] for p in publishes} == {roots[0], step["spanID"]}

    # (The indexer's bulk request is a trace of its own, linking to the records'
    # spans: a batch has many parents.)
    # Each consumer's span is a child of the publish that sent its record, and
    # the email's span a child of the consumer's span that asked for it.
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        by_name.setdefault(span["operationName"], []).append(span)
    publish_ids = {p["spanID"] for p in publishes}
    for process in by_name["orders.orders process"]:
        assert parents[process["spanID"]] in publish_ids
    [email] = by_name["deliver email"]
    assert spans[parents[email["spanID"]]]["operationName"] == "orders.orders process"
    assert all(parents[span_id] in spans for span_id in parents if span_id != roots[0])

    # The Kafka producer's and the SMTP send's spans carry their attributes.
    def tags(span: dict[str, Any]) -> dict[str, Any]:
        return {tag["key"]: tag["value"] for tag in span["tags"]}

    published = tags(publishes[0])
    assert published["messaging.system"] == "kafka"
    assert published["messaging.operation.type"] == "publish"
    assert published["messaging.destination.name"] == "orders.orders"
    assert published["messaging.kafka.message.key"] == placed.json()["id"]
    assert published["span.kind"] == "producer"
    sent = tags(email)
    assert (sent["network.protocol.name"], sent["server.port"]) == ("smtp", 1025)
    assert sent["tenx.delivery.kind"] == "order_confirmed"
    assert sent["span.kind"] == "client"

    # `make trace ID=<order id>` finds the same trace and prints it as a tree.
    shown = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tenx_tools.traces",
        placed.json()["id"],
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(shown.communicate(), 60)
    lines = out.decode().splitlines()
    assert shown.returncode == 0
    assert lines[0].startswith(f"trace {trace_id}: {len(spans)} spans")
    assert lines[1].startswith("api  POST /v1/orders  ")
    assert any(line.lstrip().startswith("notify-worker  deliver email") for line in lines)
    assert "(orphan)" not in out.decode()
