"""Print a trace from Jaeger's query API as a tree of spans.

    python -m tenx_tools.traces <trace id | order id>      (make trace ID=...)

A trace id is 32 hex digits; an order id (a UUID) is looked up through the
``tenx.order_id`` attribute the api puts on the request that placed it. Each
line: the span's service, its operation, its duration, and its error when it
failed; children are indented under their parent, in start order. A span
whose parent is not in the trace is marked ``(orphan)``. ``TENX_JAEGER_URL``
(default http://127.0.0.1:16686) says where Jaeger's query API is.
"""

import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def find_trace(client: httpx.Client, wanted: str) -> dict[str, Any]:
    """The trace of ``wanted`` (a trace id or an order id); raises LookupError."""
    if TRACE_ID.match(wanted):
        response = client.get(f"/api/traces/{wanted}")
        if response.status_code == 404:
            raise LookupError(f"no trace {wanted} in Jaeger")
        response.raise_for_status()
        trace: dict[str, Any] = response.json()["data"][0]
        return trace
    order_id = str(uuid.UUID(wanted))
    found = client.get(
        "/api/traces",
        params={
            "service": "api",
            "tags": json.dumps({"tenx.order_id": order_id}),
            "lookback": "7d",
            "limit": 1,
        },
    )
    found.raise_for_status()
    data = found.json()["data"]
    if not data:
        raise LookupError(f"no trace of order {order_id} in Jaeger")
    return find_trace(client, data[0]["traceID"])


def render(trace: dict[str, Any]) -> Iterator[str]:
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    spans = {span["spanID"]: span for span in trace["spans"]}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        parent = next(
            (r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"), None
        )
        children.setdefault(parent if parent in spans else None, []).append(span)
    roots = sorted(children.get(None, []), key=lambda s: s["startTime"])
    yield f"trace {trace['traceID']}: {len(spans)} spans, {len(set(services.values()))} services"

    def walk(span: dict[str, Any], depth: int) -> Iterator[str]:
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        error = ""
        if tags.get("error") or tags.get("otel.status_code") == "ERROR":
            error = f"  ERROR {tags.get('otel.status_description', '')}".rstrip()
        orphan = "" if depth or span is roots[0] else "  (orphan)"
        yield (
            f"{'  ' * depth}{services[span['processID']]}  {span['operationName']}"
            f"  {span['duration'] / 1000:.1f} ms{error}{orphan}"
        )
        for child in sorted(children.get(span["spanID"], []), key=lambda s: s["startTime"]):
            yield from walk(child, depth + 1)

    for root in roots:
        yield from walk(root, 0)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tenx_tools.traces <trace id | order id>")
    url = os.environ.get("TENX_JAEGER_URL", "http://127.0.0.1:16686")
    with httpx.Client(base_url=url, timeout=10) as client:
        try:
            trace = find_trace(client, sys.argv[1].strip().lower())
        except (LookupError, ValueError) as exc:
            raise SystemExit(str(exc)) from None
    for line in render(trace):
        print(line)


if __name__ == "__main__":
    main()
