"""What the edge costs: /healthz of an api instance direct vs through nginx.

Both paths are measured interleaved in one run on the same machine, so the
result is a ratio, not a time (this machine is shared and noisy).
Run: make bench (the stack must be up). Bounded: 2 x 2,000 requests, loopback only.
"""

import asyncio
import statistics
import sys
import time

import httpx

from bench.results import write

DIRECT = "http://127.0.0.1:8000/healthz"
EDGE = "http://127.0.0.1:8080/_/api/healthz"
ROUNDS = 2000


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(rounds: int = ROUNDS) -> dict[str, float]:
    timings: dict[str, list[float]] = {"direct": [], "edge": []}
    async with httpx.AsyncClient(timeout=5) as client:
        for url in (DIRECT, EDGE):  # warm both connections
            (await client.get(url)).raise_for_status()
        for _ in range(rounds):
            for name, url in (("direct", DIRECT), ("edge", EDGE)):
                started = time.perf_counter()
                (await client.get(url)).raise_for_status()
                timings[name].append(time.perf_counter() - started)
    result: dict[str, float] = {"requests_per_path": rounds}
    for name, samples in timings.items():
        result[f"{name}_p50_ms"] = round(statistics.median(samples) * 1000, 3)
        result[f"{name}_p99_ms"] = round(_percentile(samples, 0.99) * 1000, 3)
    result["edge_to_direct_p50_ratio"] = round(result["edge_p50_ms"] / result["direct_p50_ms"], 2)
    return result


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    write("edge_overhead", asyncio.run(measure(rounds)))


if __name__ == "__main__":
    main()
