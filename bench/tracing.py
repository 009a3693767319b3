"""Tracing's cost, measured in one run: the same api instance with tracing off,
on as deployed (10 % of traces sampled: parent-based, so a caller's sampled
trace is always recorded) and on for every request (the local stack's
setting), exporting to the stack's Jaeger.

- A trivial route: GET /v1/products/{id} served from the cache (the cheapest
  route with a real handler: /healthz is not traced), three rounds of 4 s per
  scenario, interleaved, the median kept.
- POST /v1/orders: a fresh Idempotency-Key per request (bench/orders.lua),
  10 s per scenario, one after another.

Throughput with tracing on over tracing off, and the spans each traced
instance dropped (``tenx_spans_dropped_total`` on its /metrics: the export
queue was full) and exported. wrk from Debian pinned to CPU 1, each server to
CPU 0, loopback only (bench/api_throughput.py's helpers).

Writes bench/results/tracing.json. Run: make bench (the stack must be up).
"""

import json
import re
import time
from contextlib import ExitStack
from typing import Any

import httpx

from bench.api_throughput import (
    BENCH_PORT,
    ROOT,
    ROUNDS,
    api_env,
    api_instance,
    median_run,
    place_orders,
    prepare,
    serving,
    wrk,
)

SCENARIOS: dict[str, dict[str, str]] = {
    "off": {"tracing_enabled": "false"},
    "deployed": {"trace_sample_ratio": "0.1"},
    "all": {"trace_sample_ratio": "1.0"},
}
TARGETS = {"trivial_route": 0.6, "place_order": 0.85}


def span_counts(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = {}
    for name in ("tenx_spans_dropped_total", "tenx_spans_ended_total"):
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        found[name.removeprefix("tenx_").removesuffix("_total")] = (
            float(match.group(1)) if match else 0.0
        )
    return found


def warm_up(port: int, token: str) -> None:
    """An authenticated read until it answers: the instance has fetched the
    signing keys (a cold instance's first requests wait for that fetch)."""
    for _ in range(100):
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/orders?limit=1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if response.status_code == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the instance on {port} never accepted the token")


def main() -> None:
    with serving(api_instance(BENCH_PORT), BENCH_PORT, api_env()):
        products, token = prepare()
    ports = {name: BENCH_PORT - 20 - i for i, name in enumerate(SCENARIOS)}
    results: dict[str, Any] = {"trivial_route": {}, "place_order": {}, "spans": {}}
    with ExitStack() as stack:
        for name, overrides in SCENARIOS.items():
            stack.enter_context(
                serving(api_instance(ports[name]), ports[name], api_env(**overrides))
            )
        urls = {n: f"http://127.0.0.1:{p}/v1/products/{products[0]}" for n, p in ports.items()}
        for url in urls.values():
            httpx.get(url)  # fill the cache
        for port in ports.values():
            warm_up(port, token)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}
        for _ in range(ROUNDS):
            for name, url in urls.items():
                runs[name].append(wrk(url))
        results["trivial_route"] = {name: median_run(found) for name, found in runs.items()}
        for name, port in ports.items():
            results["place_order"][name] = place_orders(port, products, token)
        for name in ("deployed", "all"):
            results["spans"][name] = span_counts(ports[name])
    for part in ("trivial_route", "place_order"):
        off = results[part]["off"]["rps"]
        for name in ("deployed", "all"):
            results[f"{part}_{name}_to_off_ratio"] = round(results[part][name]["rps"] / off, 2)
    results["targets"] = {f"{part}_deployed_to_off_ratio": f">= {t}" for part, t in TARGETS.items()}
    results["targets"]["spans_dropped"] = "0"
    out = ROOT / "bench" / "results" / "tracing.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
