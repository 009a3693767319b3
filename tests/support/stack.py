"""Helpers for tests that talk to the running local stack through the edge."""

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Tracer
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_auth.settings import Settings as AuthSettings
from tenx_common.data.db import primary_engine
from tenx_common.messaging import relay
from tests.support import processes

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("TENX_STATE", ROOT / ".state"))
EDGE = f"http://127.0.0.1:{processes.port('edge')}"
# Each PostgreSQL node's Patroni REST API (its second port).
PATRONI = tuple(
    f"http://127.0.0.1:{processes.port(node, index=1)}"
    for node in processes.names(kind="data")
    if node.startswith("postgres-")
)
MAILPIT = f"http://127.0.0.1:{processes.port('mailpit')}"  # the mail catcher's HTTP API
API_PORTS = (processes.port("api-1"), processes.port("api-2"))  # behind the edge's one upstream
STRONG = "correct horse battery staple 42"
T = TypeVar("T")


def overloaded(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and response.json().get("code") == "overloaded"
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def log_in(edge: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    response = await edge.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


async def sign_up(edge: httpx.AsyncClient, prefix: str = "t") -> tuple[str, dict[str, Any]]:
    """Sign up a fresh user and log it in: its email and its token pair."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    signed_up = await patiently(
        lambda: edge.post(
            "/v1/auth/signup", json={"email": email, "password": STRONG, "name": prefix}
        )
    )
    assert signed_up.status_code == 201, signed_up.text
    tokens = await patiently(
        lambda: edge.post("/v1/auth/token", json={"email": email, "password": STRONG})
    )
    assert tokens.status_code == 200, tokens.text
    pair: dict[str, Any] = tokens.json()
    return email, pair


async def new_user(edge: httpx.AsyncClient, prefix: str = "t") -> dict[str, str]:
    """Sign up a fresh user; its Authorization header."""
    _, pair = await sign_up(edge, prefix)
    return bearer(pair["access_token"])


async def admin(edge: httpx.AsyncClient) -> dict[str, str]:
    settings = AuthSettings()
    assert settings.admin_password is not None, "the local stack sets TENX_AUTH_ADMIN_PASSWORD"
    return await log_in(edge, settings.admin_email, settings.admin_password.get_secret_value())


def product_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:10]}",
        "name": "Espresso cup",
        "description": "A small cup.",
        "category": "kitchen",
        "price_cents": 2500,
        "currency": "EUR",
        "stock": 10,
    }
    return body | overrides


async def patiently(
    request: Callable[[], Awaitable[httpx.Response]], *, tries: int = 30
) -> httpx.Response:
    """Send a request again, after the ``Retry-After`` it names (and a random
    part of it, so refused clients do not all return at once), while it is
    refused with 429 (an earlier test layer may have spent the operator's
    write budget) or 503 ``overloaded`` (a burst larger than an instance
    admits at once: tenx_common.web.admission), as a client should."""
    for _ in range(tries - 1):
        response = await request()
        if response.status_code != 429 and not overloaded(response):
            return response
        wait_s = float(response.headers.get("Retry-After", "1"))
        await asyncio.sleep(wait_s * random.uniform(1.0, 1.5))  # noqa: S311 (jitter)
    return await request()


async def new_product(
    edge: httpx.AsyncClient, admin: dict[str, str], stock: int, **overrides: Any
) -> str:
    body = product_body(stock=stock, **overrides)
    response = await patiently(lambda: edge.post("/v1/products", json=body, headers=admin))
    assert response.status_code == 201, response.text
    product_id: str = response.json()["id"]
    return product_id


def order_body(product_id: str, quantity: int = 1, card: str = "pm_card_visa") -> dict[str, Any]:
    return {"items": [{"product_id": product_id, "quantity": quantity}], "payment_method": card}


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def api_metric(name: str, **labels: str) -> float:
    """A Prometheus sample summed over both api instances (0 when absent)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as client:
        for port in API_PORTS:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for match in re.finditer(rf"^{name}(?:{{(.*)}})? (\S+)$", text, re.M):
                if all(label in (match.group(1) or "") for label in wanted):
                    total += float(match.group(2))
    return total


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout_s: float = 60) -> T:
    """Poll ``check`` until it returns something truthy (within ``timeout_s``); that."""
    for _ in range(int(timeout_s * 10)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not so within {timeout_s} s")


async def stack(*args: str) -> None:
    """``deploy/local/stack ARGS``: stops and (re)starts parts of the local stack."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "deploy" / "local" / "stack"), *args, cwd=ROOT
    )
    assert await asyncio.wait_for(process.wait(), 300) == 0


def pid_of(name: str) -> int:
    """The pid of a process the local stack runs (``api-worker``, ``edge``...)."""
    found = subprocess.run(
        [str(ROOT / "deploy" / "local" / "stack"), "pid", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(found.stdout)


async def publish_a_batch(
    engine: AsyncEngine, table: Table, producer: AIOKafkaProducer, tracer: Tracer
) -> None:
    """One relay batch of ``table``, retried while the stack's relays hold every lane."""
    for _ in range(100):
        if await relay.publish_batch(engine, table, producer, tracer, batch_size=10):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no lane was free for 10 s")


async def export_all(edge: httpx.AsyncClient, admin: dict[str, str], kind: str) -> list[Any]:
    """Every row of the api's admin export of ``kind`` (``products`` or ``orders``)."""
    rows: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        # Paged by the admin's read budget: a large table's pages wait as told.
        response = await patiently(
            lambda params=params: edge.get(  # type: ignore[misc]
                f"/v1/admin/export/{kind}", params=params, headers=admin
            )
        )
        assert response.status_code == 200, response.text
        page = response.json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


async def indexed(es: Any, alias: str) -> dict[str, dict[str, Any]]:
    """Every document behind ``alias``, by id (after a refresh)."""
    await es.indices.refresh(index=alias)
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = await es.search(
            index=alias, size=2000, sort=[{"id": "asc"}], search_after=after, track_total_hits=False
        )
        hits = page["hits"]["hits"]
        if not hits:
            return found
        found |= {hit["_id"]: hit["_source"] for hit in hits}
        after = hits[-1]["sort"]


async def index_differences(edge: httpx.AsyncClient, admin: dict[str, str], es: Any) -> list[str]:
    """How the search indices differ from the api's data (empty when in step).

    Products: the same set, each with the same version and fields. Orders:
    every indexed order as the api has it; every order in the api is indexed
    unless its owner was erased (the erasure gave it a fresh pseudonymous
    owner, and the index dropped the erased user's documents)."""
    problems = []
    products = {row["id"]: row for row in await export_all(edge, admin, "products")}
    documents = await indexed(es, "products")
    fields = ("sku", "name", "description", "category", "price_cents", "currency", "stock")
    for missing in sorted(products.keys() - documents.keys()):
        problems.append(f"product {missing} not indexed")
    for extra in sorted(documents.keys() - products.keys()):
        problems.append(f"product {extra} indexed but not in the catalog")
    for id_ in sorted(products.keys() & documents.keys()):
        row, doc = products[id_], documents[id_]
        if (row["version"], *(row[f] for f in fields)) != (
            doc["version"],
            *(doc[f] for f in fields),
        ):
            problems.append(f"product {id_}: catalog v{row['version']}, index v{doc['version']}")
    orders = {row["id"]: row for row in await export_all(edge, admin, "orders")}
    documents = await indexed(es, "orders")
    for id_, doc in sorted(documents.items()):
        row = orders.get(id_)
        if row is None:
            problems.append(f"order {id_} indexed but not in the api")
        elif (row["user_id"], row["status"], row["total_cents"]) != (
            doc["user_id"],
            doc["status"],
            doc["total_cents"],
        ):
            problems.append(f"order {id_}: api {row['status']}, index {doc['status']}")
    unindexed = orders.keys() - documents.keys()
    owners = await known_users({orders[id_]["user_id"] for id_ in unindexed})
    for id_ in sorted(unindexed):
        if orders[id_]["user_id"] in owners:
            problems.append(f"order {id_} of a live user not indexed")
    return problems


async def known_users(user_ids: set[str]) -> set[str]:
    """Those of ``user_ids`` that are accounts in auth (not erased, not pseudonyms)."""
    if not user_ids:
        return set()
    engine = primary_engine(AuthSettings())
    try:
        async with engine.connect() as conn:
            found = await conn.scalars(
                text("SELECT id::text FROM users WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(u) for u in user_ids]},
            )
            return set(found)
    finally:
        await engine.dispose()


# --- the PostgreSQL cluster (Patroni) ---------------------------------------


def postgres_members() -> list[dict[str, Any]]:
    """The cluster's members as Patroni reports them (name, role: leader,
    sync_standby or replica, state, port, timeline, lag), from the first
    node that answers."""
    for url in PATRONI:
        try:
            with urllib.request.urlopen(f"{url}/cluster", timeout=2) as answer:  # noqa: S310
                members: list[dict[str, Any]] = json.load(answer)["members"]
                return members
        except OSError:
            continue
    raise AssertionError("no Patroni node answers")


def postgres_replicas() -> list[dict[str, Any]]:
    """The members that are replicas now and stream from the primary."""
    return [
        m
        for m in postgres_members()
        if m["role"] != "leader" and m.get("state") in ("running", "streaming")
    ]


def patroni(node: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """A call to Patroni's REST API on ``node`` (a member), its JSON answer."""
    request = urllib.request.Request(  # noqa: S310 (loopback)
        node["api_url"].rsplit("/", 1)[0] + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        raw = answer.read()
    return json.loads(raw) if raw.strip().startswith(b"{") else raw.decode()


@contextlib.contextmanager
def patroni_maintenance() -> Iterator[None]:
    """Patroni's maintenance mode while the block runs: it neither fails over
    nor resumes a replica's paused WAL replay (which it otherwise does)."""
    leader = next(m for m in postgres_members() if m["role"] == "leader")
    patroni(leader, "PATCH", "/config", {"pause": True})
    try:
        yield
    finally:
        patroni(leader, "PATCH", "/config", {"pause": False})


@contextlib.contextmanager
def apply_delay(node: dict[str, Any], delay: str) -> Iterator[None]:
    """The replica ``node`` replays each commit ``delay`` late while the block
    runs. Patroni owns the recovery settings (it removes one set with ALTER
    SYSTEM): the delay goes into the node's Patroni file, which Patroni reloads."""
    config = STATE / "postgres" / f"{node['name']}.yml"
    original = config.read_text()
    marker = "  recovery_conf:\n"
    assert marker in original
    config.write_text(original.replace(marker, f"{marker}    recovery_min_apply_delay: {delay}\n"))
    try:
        patroni(node, "POST", "/reload")
        _until(lambda: node_sql(int(node["port"]), "SHOW recovery_min_apply_delay") == delay)
        yield
    finally:
        config.write_text(original)
        patroni(node, "POST", "/reload")
        _until(lambda: node_sql(int(node["port"]), "SHOW recovery_min_apply_delay") == "0")


def _until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not so in time"
        time.sleep(0.2)


def node_sql(port: int, sql: str) -> str:
    """``sql`` on one node, as the postgres superuser over its Unix socket."""
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-h", str((STATE / "postgres").resolve()),
         "-p", str(port), "-d", "postgres", "-qAtc", sql],
        capture_output=True, text=True, check=True, cwd="/",
    )  # fmt: skip
    return result.stdout.strip()


def router_label(port: int, replica_ports: list[int]) -> str:
    """The session router's name for the node on ``port``: ``replica-N`` in
    the order of the service's replica URLs."""
    return f"replica-{replica_ports.index(port) + 1}"


async def lose_postgres_node(name: str, *, until_failover: bool) -> tuple[str, float]:
    """The loss of a PostgreSQL server: its Patroni and its postmaster killed
    together (SIGKILL; there is no watchdog here to fence a postmaster whose
    Patroni died). ``name`` is a node, ``postgres-primary`` or
    ``postgres-replica``. With ``until_failover`` the node stays away (its
    hold file keeps the supervisor's restart waiting) until another node is
    the primary; then it comes back, and Patroni makes it a replica. The node,
    and when it was killed (``time.monotonic``: finding it takes a moment, in
    which writes still succeed)."""
    node: str = next(
        m["name"]
        for m in postgres_members()
        if name == m["name"]
        or (name == "postgres-primary" and m["role"] == "leader")
        or (name == "postgres-replica" and m["role"] != "leader")
    )
    found = await asyncio.create_subprocess_exec(
        str(ROOT / "deploy" / "local" / "stack"), "postmaster", node, stdout=asyncio.subprocess.PIPE
    )
    postmaster = (await found.communicate())[0].decode().strip()
    hold = STATE / "run" / f"{node}.hold"
    if until_failover:
        hold.touch()
    patroni_pid = pid_of(node)
    try:
        killed = time.monotonic()
        os.kill(patroni_pid, signal.SIGKILL)
        if postmaster:
            os.kill(int(postmaster), signal.SIGKILL)
        if until_failover:
            await eventually(lambda: _another_primary(node), timeout_s=120)
    finally:
        hold.unlink(missing_ok=True)
    return node, killed


async def _another_primary(lost: str) -> str | None:
    try:
        members = await asyncio.to_thread(postgres_members)
    except AssertionError:
        return None
    leaders = [m["name"] for m in members if m["role"] == "leader" and m["state"] == "running"]
    return leaders[0] if leaders and leaders[0] != lost else None
