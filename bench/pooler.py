"""What PgBouncer costs or saves: make bench-pooler (also part of make bench).

pgbench runs bench/order_shape.sql (the SQL of one order placement, on copies
of the api's tables that bench/orders.py makes) against the primary node
directly and through PgBouncer's transaction-mode entry, in the same run:
- 64 clients, each on one connection for the whole run;
- 64 clients that connect anew for every transaction (pgbench -C: what a
  short-lived process or a pool that churns pays);
- 500 clients, each on one connection: more than PostgreSQL's
  max_connections (200), which the pooler folds into its pool of 20.
Simple query protocol in both cases (PgBouncer 1.18 in transaction mode
keeps no prepared statement). Each run ``SECONDS`` long; a run that pgbench
cannot start (the server refused its connections) is recorded with its error.

Writes bench/results/pooler.json. Run: make bench-pooler (the stack must be
up, with an order placed: the payloads are copies of real ones).
"""

import asyncio
import re
import subprocess
import sys
from datetime import datetime
from typing import Any

import asyncpg

from bench.orders import CUSTOMERS, PRODUCTS, ROOT, _dsn, node_dsn, shape_tables
from bench.results import write
from tenx_api.settings import Settings as ApiSettings

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
RUNS = (("64", 64, False), ("64_connect_per_transaction", 64, True), ("500", 500, False))


def pgbench(dsn: str, clients: int, reconnect: bool) -> dict[str, Any]:
    command = [
        "pgbench", "-n", "-M", "simple", "-c", str(clients), "-j", "2", "-T", str(SECONDS),
        *(["-C"] if reconnect else []), "-f", str(ROOT / "bench" / "order_shape.sql"),
        "-D", f"products={PRODUCTS}", "-D", f"customers={CUSTOMERS}", dsn,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    tps = re.search(r"tps = ([\d.]+)", out.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if out.returncode != 0 or tps is None:
        errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
        return {"tps": None, "error": (errors or out.stderr.splitlines() or ["?"])[-1][-200:]}
    return {
        "tps": round(float(tps.group(1)), 1),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed_transactions": int(failed.group(1)) if failed else 0,
    }


async def measure() -> dict[str, Any]:
    settings = ApiSettings()
    direct = await node_dsn(settings)
    pooled = settings.primary_url().set(drivername="postgresql")
    pooled_dsn = pooled.render_as_string(hide_password=False)
    setup = await asyncpg.create_pool(_dsn(settings), min_size=1, max_size=1)
    results: dict[str, Any] = {"seconds_per_run": SECONDS, "products": PRODUCTS}
    try:
        await shape_tables(setup)
        for name, clients, reconnect in RUNS:
            print(f"pgbench, {name} clients: direct, then through PgBouncer", file=sys.stderr)
            run = {
                "direct": await asyncio.to_thread(pgbench, direct, clients, reconnect),
                "pgbouncer": await asyncio.to_thread(pgbench, pooled_dsn, clients, reconnect),
            }
            if run["direct"]["tps"] and run["pgbouncer"]["tps"]:
                run["pgbouncer_to_direct_ratio"] = round(
                    run["pgbouncer"]["tps"] / run["direct"]["tps"], 2
                )
            results[f"clients_{name}"] = run
            await asyncio.sleep(2)  # refused clients' backends gone before the next run
    finally:
        await setup.execute("DROP SCHEMA IF EXISTS bench_orders CASCADE")
        await setup.close()
    return results


def main() -> None:
    results = asyncio.run(measure())
    results["measured_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    write("pooler", results)


if __name__ == "__main__":
    main()
