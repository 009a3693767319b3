"""Read-your-writes through the edge, with the real replicas delayed or stopped.

The replicas are delayed with recovery_min_apply_delay, set through Patroni
(each replays each commit a second late, so it stays in rotation) and stopped with the stack's
own command. The api instances count the reads they route, by target, on
/metrics: the router names a node ``replica-N`` after its place in the api's
replica URLs (every node; the primary of the moment is out of rotation).
"""

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tenx_api.settings import Settings as ApiSettings
from tests.support.stack import (
    EDGE,
    admin,
    api_metric,
    apply_delay,
    new_key,
    new_product,
    new_user,
    order_body,
    patiently,
    postgres_replicas,
    router_label,
)

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack"
USERS = 40
PAIRS_PER_USER = 25  # 1,000 create-then-read pairs


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=USERS + 10)
    async with httpx.AsyncClient(base_url=EDGE, timeout=30, limits=limits) as client:
        yield client


def replica_labels() -> dict[str, str]:
    """Node name -> the router's label, for every replica of the moment."""
    ports = [url.port or 5432 for url in ApiSettings().replica_url_list()]
    return {m["name"]: router_label(int(m["port"]), ports) for m in postgres_replicas()}


async def replica_reads() -> float:
    labels = replica_labels().values()
    return sum([await api_metric("tenx_db_reads_total", target=label) for label in labels])


@pytest.fixture
def delayed_replicas() -> Iterator[None]:
    with contextlib.ExitStack() as delays:
        for node in postgres_replicas():
            delays.enter_context(apply_delay(node, "1s"))
        yield


async def send(edge: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request; a 429 or a 503 ``overloaded`` is waited out (neither the
    limits nor admission are under test here)."""
    return await patiently(lambda: edge.request(method, url, **kwargs))  # type: ignore[arg-type]


async def test_a_thousand_writes_are_each_read_back_while_the_replicas_are_a_second_late(
    edge: httpx.AsyncClient, delayed_replicas: None
) -> None:
    product_id = await new_product(edge, await admin(edge), stock=USERS * PAIRS_PER_USER)
    users = [await new_user(edge, "ryw") for _ in range(USERS)]
    replica_reads_before = await replica_reads()
    stale: list[str] = []
    bystander_reads = 0

    async def customer(user: dict[str, str]) -> None:
        nonlocal bystander_reads
        for _ in range(PAIRS_PER_USER):
            placed = await send(
                edge, "POST", "/v1/orders", json=order_body(product_id), headers=user | new_key()
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            read = await send(edge, "GET", f"/v1/orders/{order_id}", headers=user)
            if read.status_code != 200:
                stale.append(order_id)
            # Someone who wrote nothing reads the catalog: that may come from the replica.
            listed = await send(edge, "GET", "/v1/products", params={"category": "kitchen"})
            assert listed.status_code == 200
            bystander_reads += 1

    started = time.monotonic()
    await asyncio.gather(*(customer(user) for user in users))
    elapsed = time.monotonic() - started
    replica_reads_after = await replica_reads()
    assert stale == []
    assert bystander_reads == USERS * PAIRS_PER_USER
    # The delay held the replicas back, yet reads that could be stale still went there.
    assert replica_reads_after - replica_reads_before > 0.2 * bystander_reads, elapsed


def stack(*args: str) -> None:
    subprocess.run([str(STACK), *args], check=True, capture_output=True, timeout=120)


async def test_every_read_answers_while_the_replicas_are_stopped(
    edge: httpx.AsyncClient,
) -> None:
    product_id = await new_product(edge, await admin(edge), stock=100)
    user = await new_user(edge, "ryw")
    placed = await edge.post("/v1/orders", json=order_body(product_id), headers=user | new_key())
    assert placed.status_code == 201
    order_id = placed.json()["id"]
    fallbacks_before = await api_metric("tenx_db_reads_total", target="primary")
    labels = replica_labels()
    assert len(labels) == 2, labels
    for node in labels:  # writes go on: the primary runs alone meanwhile
        stack("stop", node)
    try:
        for i in range(60):
            if i % 3 == 0:
                response = await edge.get("/v1/products", params={"category": "kitchen"})
            elif i % 3 == 1:
                response = await edge.get(f"/v1/orders/{order_id}", headers=user)
            else:
                response = await edge.get("/v1/orders", headers=user)
            assert response.status_code == 200, (i, response.text)
        for label in labels.values():
            assert await api_metric("tenx_db_replica_healthy", replica=label) == 0
        assert await api_metric("tenx_db_reads_total", target="primary") >= fallbacks_before + 40
    finally:
        for node in labels:
            stack("start", node)
    deadline = time.monotonic() + 60
    for label in labels.values():  # in rotation again at both api instances
        while await api_metric("tenx_db_replica_healthy", replica=label) < 2:
            assert time.monotonic() < deadline, f"{label} never came back into rotation"
            await asyncio.sleep(0.5)
    before = await replica_reads()
    for _ in range(10):
        assert (await edge.get("/v1/products", params={"category": "kitchen"})).status_code == 200
    assert await replica_reads() > before
