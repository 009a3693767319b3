"""``make failover-drill``: the PostgreSQL primary lost under order load.

    python -m tests.tools.failover [ORDERS] [--record]   (default 3000 orders; make
                                                   test runs 400)

First the price of synchronous replication: orders placed as fast as 16
clients can, in four windows with Patroni's synchronous mode on, off
(asynchronous streaming), off, on: the same-run ratio of the two rates.
Then the drill: ORDERS orders through the edge (the chaos workload's
clients, which retry with the same Idempotency-Key), and a third of the way
in the primary's server is lost (Patroni and its postmaster killed with
SIGKILL, kept away until a replica is promoted, then started again).

Measured: the time from the kill until an order placed after it is answered
201 (target 15 s); acknowledged orders lost (every order answered 201 must
exist afterwards, terminal, its events published once: the chaos checks);
the answers refused meanwhile and whether each 503 named a Retry-After; the
new primary, the timeline, and the old primary back as a replica. Exit 1 if
an acknowledged order is lost, an invariant breaks or the old primary does
not rejoin. ``--record`` writes bench/results/failover.json.
"""

import asyncio
import json
import random
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

import httpx

from tests.support.stack import EDGE, ROOT, eventually, lose_postgres_node, postgres_members
from tests.tools.chaos import CONCURRENCY, Run, check, engines, place, quiet, rows, setup, workload

RATE_WINDOW_S = 10.0
RATE_ORDERS = 600  # at most, per window
RECOVERY_TARGET_S = 15.0
RESULTS = ROOT / "bench" / "results" / "failover.json"


async def rate(edge: httpx.AsyncClient, run: Run, seconds: float) -> float:
    """Orders answered 201 per second, 16 clients placing them back to back."""
    rng = random.Random(7)  # noqa: S311 (a workload, not a secret)
    before = len(run.placed)
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        while time.monotonic() < deadline:
            await place(edge, run, n, rng)

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(CONCURRENCY)))
    return (len(run.placed) - before) / (time.monotonic() - started)


def patroni(path: str, body: dict[str, Any] | None = None) -> Any:
    """Patroni's REST API on the primary's node (PATCH with a body)."""
    leader = next(m for m in postgres_members() if m["role"] == "leader")
    request = urllib.request.Request(  # noqa: S310 (loopback)
        leader["api_url"].rsplit("/", 1)[0] + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="PATCH" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        return json.load(answer)


async def synchronous(on: bool) -> None:
    """Patroni's synchronous mode on or off, once the cluster shows it."""
    await asyncio.to_thread(patroni, "/config", {"synchronous_mode": on})

    async def settled() -> bool:
        members = await asyncio.to_thread(postgres_members)
        return any(m["role"] == "sync_standby" for m in members) == on

    await eventually(settled, timeout_s=60)


def outage(run: Run, killed: float) -> dict[str, Any]:
    """What the clients saw from the kill until writes succeeded again."""
    after = sorted(a for a in run.attempts if a[0] >= killed)
    first = next((a for a in after if a[2] == 201), None)
    recovered = first[1] if first else None
    meanwhile = [
        a for a in run.attempts if a[1] >= killed and (recovered is None or a[1] < recovered)
    ]
    refused = Counter(a[2] for a in meanwhile if a[2] != 201)
    unavailable = [a for a in meanwhile if a[2] == 503]
    return {
        "writes_again_after_s": round(recovered - killed, 2) if recovered else None,
        "refused_meanwhile": {str(k or "no answer"): v for k, v in sorted(refused.items())},
        "503_with_retry_after": sum(1 for a in unavailable if a[3]),
        "503_total": len(unavailable),
    }


async def lost_orders(run: Run) -> list[str]:
    """Orders answered 201 that the database does not hold."""
    api = engines()["api"]
    try:
        found = {
            str(order_id)
            for (order_id,) in await rows(
                api,
                "SELECT id FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))",
                ids=list(run.placed),
            )
        }
    finally:
        await api.dispose()
    return sorted(set(run.placed) - found)


async def rejoined(node: str, timeline: int) -> dict[str, Any] | None:
    members = await asyncio.to_thread(postgres_members)
    me = next((m for m in members if m["name"] == node), None)
    up = me is not None and me["role"] != "leader" and me.get("state") in ("running", "streaming")
    return me if up and me is not None and int(me.get("timeline", 0)) > timeline else None


async def main(orders: int, record: bool) -> int:
    databases = engines()
    dead_before = {
        n: (await rows(e, "SELECT count(*) FROM dead_letters"))[0][0] for n, e in databases.items()
    }
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(base_url=EDGE, timeout=30, limits=limits) as edge:
        # Stock for the rate windows' orders too: an order refused for
        # stock is quick and would flatter the window it falls in.
        run = await setup(edge, orders + 4 * RATE_ORDERS)
        # Windows in the order on, off, off, on: a drift in the machine's
        # speed over the four weighs on both modes alike.
        sync_rate = await rate(edge, run, RATE_WINDOW_S) / 2
        await synchronous(False)
        async_rate = await rate(edge, run, RATE_WINDOW_S) / 2
        async_rate += await rate(edge, run, RATE_WINDOW_S) / 2
        await synchronous(True)
        sync_rate += await rate(edge, run, RATE_WINDOW_S) / 2
        print(
            f"failover: {sync_rate:.1f} orders/s with synchronous replication, "
            f"{async_rate:.1f} without (ratio {sync_rate / async_rate:.2f})",
            flush=True,
        )
        before = postgres_members()
        old = next(m for m in before if m["role"] == "leader")
        duration = max(orders / 20, 45.0)

        async def lose() -> tuple[str, float]:
            await asyncio.sleep(duration / 3)
            return await lose_postgres_node("postgres-primary", until_failover=True)

        loser = asyncio.create_task(lose())
        await workload(edge, run, orders, duration)
        node, killed = await loser
    seen = outage(run, killed)
    after = postgres_members()
    new = next(m for m in after if m["role"] == "leader")
    back = await eventually(lambda: rejoined(node, int(old["timeline"])), timeout_s=180)
    await quiet(databases, run, timeout_s=600)
    results = await check(run, databases, dead_before)
    for engine in databases.values():
        await engine.dispose()
    lost = await lost_orders(run)
    lost_line = f"{len(lost)} of {len(run.placed)}"
    results.insert(0, ("acknowledged orders lost: 0", not lost, lost_line))
    within = seen["writes_again_after_s"] is not None
    results.append(("writes succeed again after the kill", within, str(seen)))
    results.append(
        (
            "every 503 meanwhile named a Retry-After",
            seen["503_with_retry_after"] == seen["503_total"],
            f"{seen['503_with_retry_after']} of {seen['503_total']}",
        )
    )
    results.append(
        (
            "the old primary rejoined as a replica",
            True,
            f"{node}: {back['role']}, timeline {back['timeline']}",
        )
    )
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"  {'ok  ' if ok else 'FAIL'}  {name.ljust(width)}  {detail}")
    report = {
        "orders_placed": len(run.placed),
        "orders_lost": len(lost),
        "killed": node,
        "new_primary": new["name"],
        "timeline": {"before": old["timeline"], "after": new["timeline"]},
        **seen,
        "target_s": RECOVERY_TARGET_S,
        "orders_per_s_synchronous": round(sync_rate, 1),
        "orders_per_s_asynchronous": round(async_rate, 1),
        "synchronous_over_asynchronous": round(sync_rate / async_rate, 3),
    }
    print("failover: " + json.dumps(report), flush=True)
    if record:
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, ok, _ in results if not ok]
    print("failover: " + (f"VIOLATED: {'; '.join(failed)}" if failed else "every invariant held"))
    return 1 if failed else 0


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(arguments[0]) if arguments else 3000
    raise SystemExit(asyncio.run(main(count, "--record" in sys.argv)))
