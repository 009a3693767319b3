"""The placement's SQL and the benchmark's copy of it: pgbench runs
bench/order_shape.sql as "the order shape", the limit the api is measured
against, so it must stay the statements a placement sends. This places an
order in process (of a product whose price the process knows, as at load)
and compares, statement by statement, what each one reads, writes or calls
with the file. The SQL function a placement calls, ``place_order``, is
copied for pgbench from the database's own definition (bench/orders.py)."""

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from tenx_api.bootstrap import bootstrap
from tenx_api.domain.orders import PlaceOrder
from tenx_api.service_layer.orders import place_order
from tenx_api.settings import Settings as ApiSettings
from tests.support.stack import EDGE, admin, new_product

SHAPE = Path(__file__).parents[2] / "bench" / "order_shape.sql"
Shape = tuple[tuple[str, str], ...]


def shape(statement: str) -> Shape:
    """What a statement does, as (verb, table or function) pairs: each table
    it writes, in order; for a read, the function it calls or its table."""
    sql = re.sub(r"\bbench_orders\.", "", statement)
    writes = re.findall(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", sql, re.IGNORECASE)
    if writes:
        return tuple((verb.split()[0].upper(), table.lower()) for verb, table in writes)
    if called := re.search(r"\b(pg_\w+)\s*\(", sql):
        return (("SELECT", called.group(1)),)
    [table] = re.findall(r"\bFROM\s+(\w+)", sql, re.IGNORECASE)[:1]
    return (("SELECT", table.lower()),)


def benchmark_shape() -> list[Shape]:
    lines = [
        line
        for line in SHAPE.read_text().splitlines()
        if not line.startswith("--") and not line.startswith("\\")
    ]
    statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    return [shape(s) for s in statements if s.upper() not in ("BEGIN", "COMMIT")]


async def test_the_benchmarks_order_shape_is_what_a_placement_sends(
    api_settings: ApiSettings,
) -> None:
    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as edge:
        product = await new_product(edge, await admin(edge), stock=5)
    sent: list[str] = []
    placing = False

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if placing:
            sent.append(statement)

    settings = api_settings.model_copy(update={"rate_limit_enabled": False})
    async with bootstrap(settings) as wiring:
        engine = wiring.deps.sessions.engines.primary.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            for measured in (False, True):  # the first learns the product's price
                placing = measured
                answer = await place_order(
                    PlaceOrder.model_validate(
                        {
                            "items": [{"product_id": product, "quantity": 1}],
                            "payment_method": "pm_card_visa",
                        }
                    ),
                    user_id=uuid.uuid4(),
                    key=str(uuid.uuid4()),
                    request_hash="h",
                    deps=wiring.deps,
                )
        finally:
            placing = False
            event.remove(engine, "before_cursor_execute", seen)
    assert answer.status == 201
    placement = [shape(s) for s in sent if "pg_current_wal_lsn" not in s]  # after the commit
    assert placement == benchmark_shape()
