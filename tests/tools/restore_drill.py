"""``make restore-drill``: a point-in-time restore proves itself.

    python -m tests.tools.restore_drill [--record]

Orders are placed, the time is noted (the primary's clock), more orders are
placed; then the cluster is restored to the noted time into a scratch
cluster (``deploy/local/stack restore``, never over the live one), and the
scratch cluster must hold exactly the orders placed before the time and
none after it.

Measured: the RPO (from the last order's commit until the WAL holding it is
in the backup repository: WAL is shipped when a segment fills or after
``archive_timeout``; nothing forces it here) and the RTO (the restore
command: copying the backup, replaying WAL to the time, promoting, until
the scratch cluster answers). Targets: RPO at most 60 s, RTO at most 5 min.
``--record`` writes bench/results/restore.json. Exit 1 when the restored
orders are not exactly those before the time.
"""

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tests.support.stack import (
    EDGE,
    ROOT,
    admin,
    new_key,
    new_product,
    new_user,
    order_body,
    patiently,
)

ORDERS_EACH_SIDE = 20
SCRATCH_PORT = 5499
RPO_TARGET_S, RTO_TARGET_S = 60.0, 300.0
RESULTS = ROOT / "bench" / "results" / "restore.json"


async def place(
    edge: httpx.AsyncClient, user: dict[str, str], product: str, count: int
) -> list[str]:
    placed = []
    for _ in range(count):
        headers = user | new_key()  # a refusal for rate is sent again with the same key
        answer = await patiently(
            lambda h=headers: edge.post("/v1/orders", json=order_body(product), headers=h)  # type: ignore[misc]
        )
        assert answer.status_code == 201, answer.text
        placed.append(answer.json()["id"])
    return placed


async def primary_value(sql: str) -> Any:
    return (await primary_rows(sql))[0]


async def archived_after(segment: str, committed: datetime, timeout_s: float = 180) -> float:
    """Seconds from ``committed`` until WAL segment ``segment`` (or a later
    one) was archived, by the primary's archiver statistics."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last, at = await primary_rows(
            "SELECT last_archived_wal, last_archived_time FROM pg_stat_archiver"
        )
        if last is not None and last[8:] >= segment[8:] and at is not None:
            return max(0.0, float((at - committed).total_seconds()))
        await asyncio.sleep(1)
    raise AssertionError(f"WAL segment {segment} was not archived within {timeout_s:.0f} s")


async def primary_rows(sql: str) -> Any:
    engine = primary_engine(ApiSettings())
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).one()
    finally:
        await engine.dispose()


async def restored_orders(ids: list[str]) -> set[str]:
    settings = ApiSettings()
    url = settings.replica_url_list()[0].set(port=SCRATCH_PORT)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.scalars(
                text("SELECT id::text FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": ids},
            )
            return set(found)
    finally:
        await engine.dispose()


def stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "deploy" / "local" / "stack"), *args],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip


async def main(record: bool) -> int:
    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as edge:
        product = await new_product(edge, await admin(edge), stock=10 * ORDERS_EACH_SIDE)
        user = await new_user(edge, "restore")
        before = await place(edge, user, product, ORDERS_EACH_SIDE)
        await asyncio.sleep(1)
        noted: datetime = await primary_value("SELECT clock_timestamp()")
        await asyncio.sleep(1)
        after = await place(edge, user, product, ORDERS_EACH_SIDE)
    committed: datetime = await primary_value("SELECT clock_timestamp()")
    segment: str = await primary_value("SELECT pg_walfile_name(pg_current_wal_lsn())")
    rpo = await archived_after(segment, committed)
    started = time.monotonic()
    restore = stack("restore", noted.isoformat(sep=" "))
    rto = time.monotonic() - started
    print(restore.stdout + restore.stderr, flush=True)
    try:
        if restore.returncode != 0:
            print("restore drill: the restore failed")
            return 1
        found = await restored_orders(before + after)
    finally:
        stack("scratch-stop")
    results = [
        ("every order before the time is restored", set(before) <= found,
         f"{len(set(before) & found)} of {len(before)}"),
        ("no order after the time is restored", not (set(after) & found),
         f"{len(set(after) & found)} of {len(after)}"),
        (f"RPO at most {RPO_TARGET_S:.0f} s", rpo <= RPO_TARGET_S, f"{rpo:.1f} s"),
        (f"RTO at most {RTO_TARGET_S:.0f} s", rto <= RTO_TARGET_S, f"{rto:.1f} s"),
    ]  # fmt: skip
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"  {'ok  ' if ok else 'FAIL'}  {name.ljust(width)}  {detail}")
    report = {
        "target_time": noted.isoformat(),
        "orders_before": len(before),
        "orders_after": len(after),
        "restored_before": len(set(before) & found),
        "restored_after": len(set(after) & found),
        "rpo_s": round(rpo, 1),
        "rto_s": round(rto, 1),
        "rpo_target_s": RPO_TARGET_S,
        "rto_target_s": RTO_TARGET_S,
    }
    print("restore drill: " + json.dumps(report), flush=True)
    if record:
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    # The targets are reported; the orders are the drill's invariant.
    return 0 if found == set(before) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main("--record" in sys.argv)))
