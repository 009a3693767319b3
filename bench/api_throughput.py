"""The api against its baselines, measured side by side in one run.

HTTP (wrk from Debian pinned to CPU 1, each server pinned to CPU 0, 16
connections, loopback only; three rounds of 4 s per scenario, interleaved,
the median kept):
- a raw ASGI app and a bare FastAPI JSON endpoint (bench/baseline_apps.py);
- GET /v1/products/{id} (cached, anonymous) on a bench instance of the api
  (port 8099, the stack's code and settings, per-address limits raised so the
  rate limiter runs on every request but never refuses): as deployed (10% of
  traces sampled), then every request traced (the local default), without
  tracing, and without tracing and rate limiting, to show what each layer costs;
- POST /v1/orders on the same instance: throughput and p99 (one customer,
  one unit of one of 50 products per order, a fresh Idempotency-Key per
  request, bench/orders.lua).

SQL: the api's product lookup (adapters.statements.product: a prebuilt Core
statement on an AsyncSession's connection) against asyncpg's fetchrow of the same row,
in interleaved chunks so that the machine's noise falls on both alike.

Writes bench/results/api_throughput.json. Run: make bench (the stack must be up).
"""

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tenx_api.adapters import statements as sql
from tenx_api.settings import Settings
from tenx_auth.settings import Settings as AuthSettings
from tenx_common.runtime.app import admission_limit

ROOT = Path(__file__).resolve().parents[1]
EDGE = "http://127.0.0.1:8080"
DURATION_S = 4
ROUNDS = 3
CONNECTIONS = 16
BENCH_PORT = 8099
UNLIMITED = "100000000"
ORDER_PRODUCTS = 50  # orders spread over many rows, as a catalog's would be


def wrk(
    url: str,
    *extra: str,
    env: dict[str, str] | None = None,
    seconds: int = DURATION_S,
    connections: int = CONNECTIONS,
) -> dict[str, float]:
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    out = subprocess.run(
        [*command, "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    refused = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    why = re.search(r"^first non-2xx: (.*)$", out, re.M)
    if why:  # say why some were refused (the figure alone would hide it)
        print(f"wrk {url}: {why.group(1)[:300]}", file=sys.stderr)
    assert rps, out
    assert p99, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "rps": round(float(rps.group(1))),
        "p99_ms": round(float(p99.group(1)) * scale, 2),
        "non_2xx": int(refused.group(1)) if refused else 0,
    }


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    process = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{command} did not start on {port}")
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)


def api_instance(port: int) -> list[str]:
    return [sys.executable, "-m", "tenx_api", "serve", "--port", str(port)]


def api_env(**overrides: str) -> dict[str, str]:
    """The bench instance's environment: limits raised; ``overrides`` are TENX_API_* settings."""
    limits = {
        f"TENX_API_RATE_LIMIT_{who}_{kind}_PER_MINUTE": UNLIMITED
        for who in ("IP", "USER")
        for kind in ("READ", "WRITE")
    }
    return limits | {f"TENX_API_{name.upper()}": value for name, value in overrides.items()}


def prepare() -> tuple[list[str], str]:
    """Products with plenty of stock (made through the bench instance, whose
    limits allow it) and a customer's access token."""
    bench = httpx.Client(base_url=f"http://127.0.0.1:{BENCH_PORT}", timeout=30)
    with httpx.Client(base_url=EDGE, timeout=30) as edge, bench:
        auth = AuthSettings()
        assert auth.admin_password is not None, "the local stack sets TENX_AUTH_ADMIN_PASSWORD"
        password = auth.admin_password.get_secret_value()
        admin = edge.post(
            "/v1/auth/token", json={"email": auth.admin_email, "password": password}
        ).json()["access_token"]
        products = []
        for _ in range(ORDER_PRODUCTS):
            product = bench.post(
                "/v1/products",
                json={
                    "sku": f"BENCH-{uuid.uuid4().hex[:10]}",
                    "name": "Bench kettle",
                    "category": "kitchen",
                    "price_cents": 4200,
                    "stock": 1_000_000,
                },
                headers={"Authorization": f"Bearer {admin}"},
            )
            product.raise_for_status()
            products.append(product.json()["id"])
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        password = f"bench {uuid.uuid4().hex}"
        edge.post("/v1/auth/signup", json={"email": email, "password": password, "name": "B"})
        token = edge.post("/v1/auth/token", json={"email": email, "password": password}).json()[
            "access_token"
        ]
    return products, token


# The api scenarios: TENX_API_* overrides of the bench instance, each on its own port.
LADDER: dict[str, dict[str, str]] = {
    # As deployed: a tenth of the traces sampled (parent-based: a caller's
    # sampled trace is always recorded), the production setting.
    "api_cached_product": {"trace_sample_ratio": "0.1"},
    "api_cached_product_all_traced": {},  # the local stack's setting: every request
    "api_cached_product_untraced": {"tracing_enabled": "false"},
    "api_cached_product_untraced_unlimited": {
        "tracing_enabled": "false",
        "rate_limit_enabled": "false",
    },
}


def place_orders(port: int, products: list[str], token: str) -> dict[str, float]:
    """wrk placing orders on the instance at ``port`` for 10 s (bench/orders.lua),
    with as many connections as the instance admits at once (its primary pool:
    tenx_common.web.admission); more would measure its refusals."""
    return wrk(
        f"http://127.0.0.1:{port}/v1/orders",
        "-s",
        str(ROOT / "bench" / "orders.lua"),
        env={
            "TENX_BENCH_TOKEN": token,
            "TENX_BENCH_PRODUCTS": ",".join(products),
            "TENX_BENCH_KEY_PREFIX": uuid.uuid4().hex,
        },
        seconds=10,
        connections=admission_limit(Settings()),
    )


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def http_benchmarks(products: list[str], token: str) -> dict[str, Any]:
    """Every server is started at once (idle ones cost nothing); then ROUNDS
    rounds run each scenario in turn, so the machine's drift falls on all of
    them alike; each figure is the median of its rounds."""
    targets: dict[str, str] = {}
    with ExitStack() as stack:
        for kind, port in (("asgi", 8091), ("fastapi", 8092)):
            command = [sys.executable, "-m", "bench.baseline_apps", kind, str(port)]
            stack.enter_context(serving(command, port))
            targets[f"{kind}_baseline"] = f"http://127.0.0.1:{port}/v1/products/x"
        for offset, (name, overrides) in enumerate(LADDER.items()):
            port = BENCH_PORT - 1 - offset
            stack.enter_context(serving(api_instance(port), port, api_env(**overrides)))
            targets[name] = f"http://127.0.0.1:{port}/v1/products/{products[0]}"
            httpx.get(targets[name])  # fill the cache
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, url in targets.items():
                runs[name].append(wrk(url))
    results: dict[str, Any] = {name: median_run(found) for name, found in runs.items()}
    with serving(api_instance(BENCH_PORT), BENCH_PORT, api_env()):
        results["api_place_order"] = place_orders(BENCH_PORT, products, token)
    fastapi, asgi = results["fastapi_baseline"]["rps"], results["asgi_baseline"]["rps"]
    for name in LADDER:
        results[f"{name}_to_fastapi_ratio"] = round(results[name]["rps"] / fastapi, 2)
        results[f"{name}_to_asgi_ratio"] = round(results[name]["rps"] / asgi, 2)
    return results


async def lookup_benchmark(
    product_id: str, chunks: int = 20, per_chunk: int = 200
) -> dict[str, Any]:
    settings = Settings()
    url = settings.session_url()  # prepared statements kept, as on a direct connection
    engine = create_async_engine(url, pool_size=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    uid = uuid.UUID(product_id)
    spent = {"sqlalchemy": 0.0, "asyncpg": 0.0}
    try:
        async with sessions() as session:
            for _ in range(chunks):
                started = time.perf_counter()
                for _ in range(per_chunk):
                    assert await sql.product(await session.connection(), uid) is not None
                spent["sqlalchemy"] += time.perf_counter() - started
                started = time.perf_counter()
                for _ in range(per_chunk):
                    await conn.fetchrow("SELECT * FROM products WHERE id = $1", uid)
                spent["asyncpg"] += time.perf_counter() - started
    finally:
        await conn.close()
        await engine.dispose()
    lookups = chunks * per_chunk
    return {
        "sqlalchemy_pk_lookups_per_s": round(lookups / spent["sqlalchemy"]),
        "asyncpg_fetchrow_per_s": round(lookups / spent["asyncpg"]),
        "sqlalchemy_to_asyncpg_ratio": round(spent["asyncpg"] / spent["sqlalchemy"], 2),
    }


def main() -> None:
    with serving(api_instance(BENCH_PORT), BENCH_PORT, api_env()):
        products, token = prepare()
    results = http_benchmarks(products, token)
    results.update(asyncio.run(lookup_benchmark(products[0])))
    results["targets"] = {
        "api_cached_product_to_fastapi_ratio": ">= 0.5",
        "sqlalchemy_to_asyncpg_ratio": ">= 0.5",
    }
    out = ROOT / "bench" / "results" / "api_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
