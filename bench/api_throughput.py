"""GET /v1/products/{id} (cached) against a bare FastAPI endpoint and a raw ASGI
app, and a SQLAlchemy primary-key lookup against a raw asyncpg loop.

All sides run in one go on this machine; the results are ratios. wrk (Debian)
runs pinned to CPU 1 and each server process to CPU 0, 2 connections, 10 s,
loopback only. Run: make bench (the stack must be up).
"""

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tenx_api.adapters.orm import Product
from tenx_api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DURATION_S = 10


def wrk_requests_per_s(url: str) -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c2", f"-d{DURATION_S}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def serve_baseline(kind: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "bench.baseline_apps", kind, str(port)],
        cwd=ROOT,
    )
    for _ in range(100):
        probe = subprocess.run(
            ["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.1:{port}/v1/products/x"],
            check=False,
        )
        if probe.returncode == 0:
            return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {kind} baseline did not start")


def http_ratios(product_id: str) -> dict[str, float]:
    api = wrk_requests_per_s(f"http://127.0.0.1:8000/v1/products/{product_id}")
    results: dict[str, float] = {"api_cached_product_rps": round(api)}
    for kind, port in (("fastapi", 8091), ("asgi", 8092)):
        server = serve_baseline(kind, port)
        try:
            rps = wrk_requests_per_s(f"http://127.0.0.1:{port}/v1/products/{uuid.uuid4()}")
        finally:
            server.terminate()
            server.wait(timeout=10)
        results[f"{kind}_baseline_rps"] = round(rps)
        results[f"api_to_{kind}_ratio"] = round(api / rps, 2)
    return results


async def lookup_ratio(product_id: str, rounds: int = 3000) -> dict[str, float]:
    settings = Settings()
    engine = create_async_engine(settings.primary_url(), pool_size=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    uid = uuid.UUID(product_id)
    started = time.perf_counter()
    async with sessions() as session:
        for _ in range(rounds):
            (await session.execute(select(Product).where(Product.id == uid))).scalar_one()
            session.expunge_all()
    orm = rounds / (time.perf_counter() - started)
    await engine.dispose()
    url = settings.primary_url()
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    started = time.perf_counter()
    for _ in range(rounds):
        await conn.fetchrow("SELECT * FROM products WHERE id = $1", uid)
    raw = rounds / (time.perf_counter() - started)
    await conn.close()
    return {
        "sqlalchemy_pk_lookups_per_s": round(orm),
        "asyncpg_fetchrow_per_s": round(raw),
        "sqlalchemy_to_asyncpg_ratio": round(orm / raw, 2),
    }


def main() -> None:
    listing = subprocess.run(
        ["curl", "-fs", "http://127.0.0.1:8080/v1/products?limit=1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    product_id = json.loads(listing)["items"][0]["id"]
    results = http_ratios(product_id)
    results.update(asyncio.run(lookup_ratio(product_id)))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
