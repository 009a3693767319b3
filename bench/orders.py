"""The whole order pipeline under load, on the stack as `make up` leaves it:
make bench-orders (also part of make bench).

Set-up: every Python process of the stack restarted with traces sampled at
10 % (as deployed; the local default records every trace), through the
override file the stack's launchers read (``.state/override.env``, removed
and the processes restarted again at the end). Rate limiting stays on.
``CUSTOMERS`` customers sign up, each with its own loopback address
(127.0.1.N, so the per-address limits count each apart) and its own api
instance (the two alternate); each order is one unit of one of ``PRODUCTS``
demo products under a fresh Idempotency-Key.

Phases, each ``SECONDS`` long: a closed loop of 16 connections, one of 64,
an open loop at ``RATE`` orders/s (a new order every 1/RATE s whatever the
answers; at most ``OPEN_CAP`` in flight, beyond that an order counts as
"not sent"), and an open loop at 70 % of the rate the closed loop of 16's
orders were finished at, drain included (the latencies of a stack that keeps
up). After each, until every order it placed is terminal
(``confirmed`` or ``cancelled``), in the customer's feed, emailed and in the
``orders`` index as terminal, or ``DRAIN_TIMEOUT_S``. Per order:
- placement: the client's send to its 201;
- -> confirmed: the order row's ``updated_at`` (the saga's transaction);
- -> feed: the notification row's ``created_at``;
- -> email: the delivery row's ``sent_at`` (the mail catcher accepted it);
- -> indexed: the first poll (every ``POLL_S``) of the ``orders`` index that
  finds its document terminal (searchable: after a refresh), timed for one
  order in ``INDEX_SAMPLE``: each poll is a search in Elasticsearch, whose
  CPU counts against the stack's, and polling every order's id five times a
  second cost about 1 ms of it per order; after the drain one pass checks
  that every order got there.
Per phase also the share of placements answered 201 that took over 500 ms
as the client timed them and as the api instances' request middleware did
(their /metrics): where the two part, the time went before the server read
the request or after it answered (the client, the network, a busy loop).

The same run's limits: pgbench running bench/order_shape.sql (the SQL of one
placement) on the primary at 16 and 64 clients; the api alone (workers,
relays, the indexer and notify stopped) in a closed loop of 16, its backlog
drained once they are back. CPU seconds of every process (its whole tree,
from /proc) over each phase, per order; PostgreSQL statements and commits
per order (pg_stat_statements, pg_stat_database; this benchmark's own
queries left out); the stack's memory (PSS) at idle before and after.

The quick form (``make bench-orders QUICK=1``, ``--quick``; a few minutes,
for iterating): 20 s phases, the closed loop of 16 and the open loop only,
pgbench at 16 clients on a copy of the tables kept between quick runs, no
"api alone". It writes bench/results/orders-quick.json; the full form's
bench/results/orders.json is the one of record. For a profile of one phase,
``TENX_BENCH_PHASES`` names the phases to run (``open_sustained`` with
``TENX_BENCH_SUSTAINED_RATE`` orders/s, as there is no closed loop to take 80 %
of), with the quick form's pgbench; it writes nothing. Both forms print what they are doing
every few seconds (the phase, seconds left, orders placed and finished so
far) and end with one table of the figures the performance issue judges.

Run: make bench-orders [QUICK=1] (the stack must be up).
"""

import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from tests.support import processes
from tests.support.stack import STRONG

from bench.results import write
from tenx_api.settings import Settings as ApiSettings
from tenx_notify.settings import Settings as NotifySettings

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "local" / "stack"
OVERRIDE = ROOT / ".state" / "override.env"
AUTH = f"http://127.0.0.1:{processes.port('auth')}"
API_PORTS = (processes.port("api-1"), processes.port("api-2"))
ES = f"http://127.0.0.1:{processes.port('elasticsearch')}"
QUICK = "--quick" in sys.argv[1:]
SECONDS = int(os.environ.get("TENX_BENCH_SECONDS", "20" if QUICK else "60"))
CUSTOMERS = 160
PRODUCTS = 200
RATE = int(os.environ.get("TENX_BENCH_RATE", "100"))
PHASES = os.environ.get("TENX_BENCH_PHASES", "").split()  # a profile's phases; all when empty
OPEN_CAP = 512
POLL_S = 0.2
INDEX_SAMPLE = 4  # one order in this many is timed to the index
DRAIN_TIMEOUT_S = 120 if QUICK else 240
LAG_TICK_S = 0.01  # how often the client's own loop lag is sampled
PROGRESS_S = 5.0  # how often a running phase or drain says where it is
TRACE_RATIO = "0.1"
# Every Python process (the workers each with its service's relay).
PYTHON = processes.names(kind="service")
POSTGRES = tuple(name for name in processes.names(kind="data") if name.startswith("postgres-"))
# Stopped for "the api alone": everything an order reaches after its commit.
DOWNSTREAM = (*("api-worker", "auth-worker", "notify-worker", "notify", "search-indexer"),)
API = ("api-1", "api-2")  # restarted without the backlog bound for "the api alone"
TERMINAL = ("confirmed", "cancelled")


def stack(*args: str) -> str:
    return subprocess.run([str(STACK), *args], check=True, capture_output=True, text=True).stdout


def restart(names: tuple[str, ...]) -> None:
    for name in names:
        stack("stop", name)
        stack("start", name)
    for name in names:
        stack("wait", name, "120")


# --- processes: CPU and memory from /proc ---------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _members(name: str, pid: int, children: dict[int, list[int]]) -> list[int]:
    """A component's processes; supervisord is every component's parent, so
    only its own process is its. A PostgreSQL node's postmaster (and so its
    backends) left Patroni's tree (Patroni double-forks it): added apart."""
    if name == "supervisord":
        return [pid]
    members = _tree(pid, children)
    if name in POSTGRES:
        postmaster = stack("postmaster", name).strip()
        if postmaster.isdigit():
            members += _tree(int(postmaster), children)
    return members


def cpu_seconds() -> dict[str, float]:
    """CPU seconds of each component's process tree: every live process's own
    and its reaped children's (a backend that ended is in its parent's)."""
    tick = os.sysconf("SC_CLK_TCK")
    children = _children()
    out: dict[str, float] = {}
    for line in stack("pids").splitlines():
        name, pid = line.split()
        total = 0
        for member in _members(name, int(pid), children):
            try:
                fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime stime, and cutime cstime (children it has reaped) but supervisord's
            own = fields[11:13] if name == "supervisord" else fields[11:15]
            total += sum(int(value) for value in own)
        out[name] = total / tick
    out["(this benchmark)"] = sum(os.times()[:2])
    return out


def resident_mb() -> float:
    """The stack's memory: the proportional set size (PSS: a page shared by n
    processes counts 1/n in each) of every process of every component, so
    PostgreSQL's shared buffers count once, not once per backend."""
    children = _children()
    total_kb = 0
    for line in stack("pids").splitlines():
        name, pid = line.split()
        for member in _members(name, int(pid), children):
            try:
                rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
            except OSError:
                continue
            found = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
            total_kb += int(found.group(1)) if found else 0
    return round(total_kb / 1024)


# --- the load ---------------------------------------------------------------------


@dataclass
class Customer:
    n: int
    user_id: str
    token: str
    session: aiohttp.ClientSession
    port: int
    sent: int = 0


@dataclass
class Reached:
    confirmed: dict[str, float] = field(default_factory=dict)
    feed: dict[str, float] = field(default_factory=dict)
    emailed: dict[str, float] = field(default_factory=dict)
    indexed: dict[str, float] = field(default_factory=dict)


@dataclass
class Phase:
    name: str
    sent_at: dict[str, float] = field(default_factory=dict)  # order id -> wall clock
    latencies_ms: list[float] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    refused_ms: list[float] = field(default_factory=list)  # how soon each refusal came
    # How late this process's loop woke a task (every latency above includes it).
    client_lag_ms: list[float] = field(default_factory=list)
    not_sent: int = 0
    seconds: float = 0.0
    reached: Reached = field(default_factory=Reached)
    watched: list[str] = field(default_factory=list)  # the orders timed to the index
    watcher: "asyncio.Task[None] | None" = None

    def __post_init__(self) -> None:
        # The index is polled from the phase's first order on: a document is
        # timed when a poll first finds it terminal (POLL_S apart at best).
        self.watcher = asyncio.create_task(_watch_index(self))


async def sign_up(n: int, products: list[str]) -> Customer:
    address = f"127.0.1.{n + 1}"
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    signed = await patient_post(
        session, f"{AUTH}/v1/auth/signup", {"email": email, "password": STRONG, "name": "bench"}
    )
    credentials = {"email": email, "password": STRONG}
    token = await patient_post(session, f"{AUTH}/v1/auth/token", credentials)
    return Customer(n, signed["id"], token["access_token"], session, API_PORTS[n % 2])


async def patient_post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> dict[str, Any]:
    """The body of a 2xx answer, sent again after Retry-After while refused
    (429, 503 overloaded: sign-ups run Argon2, which admission bounds)."""
    for _ in range(30):
        async with session.post(url, json=body) as answer:
            payload: dict[str, Any] = await answer.json(content_type=None)
            if answer.status < 300:
                return payload
            if answer.status not in (429, 503):
                raise AssertionError(f"{url}: {answer.status} {payload}")
            wait_s = float(answer.headers.get("Retry-After", "1"))
        await asyncio.sleep(wait_s * random.uniform(1.0, 1.5))
    raise AssertionError(f"{url}: refused 30 times")


async def place(customer: Customer, products: list[str], phase: Phase) -> float:
    """Place one order; how long the server asked to wait before the next
    (a refusal's Retry-After, which a closed loop's connection honours)."""
    customer.sent += 1
    product = products[(customer.n * 7 + customer.sent) % len(products)]
    body = {"items": [{"product_id": product, "quantity": 1}], "payment_method": "pm_card_visa"}
    headers = {"Authorization": f"Bearer {customer.token}", "Idempotency-Key": uuid.uuid4().hex}
    started, wall = time.perf_counter(), time.time()
    try:
        async with customer.session.post(
            f"http://127.0.0.1:{customer.port}/v1/orders", json=body, headers=headers
        ) as answer:
            payload = await answer.json(content_type=None)
            status = answer.status
            retry_after = answer.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        phase.refused[f"no answer ({type(exc).__name__})"] += 1
        return 0.0
    if status == 201:
        phase.sent_at[payload["id"]] = wall
        if len(phase.sent_at) % INDEX_SAMPLE == 0:
            phase.watched.append(payload["id"])
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        phase.refused[f"{status} {payload.get('code', '')}".strip()] += 1
        phase.refused_ms.append((time.perf_counter() - started) * 1000)
        return float(retry_after or 0)
    return 0.0


@dataclass
class Load:
    customers: list[Customer]
    products: list[str]
    api: asyncpg.Pool  # for the progress lines


async def closed_loop(load: Load, connections: int, seconds: float, name: str) -> Phase:
    phase = Phase(name)
    deadline = time.perf_counter() + seconds
    turn = iter(range(10**9))

    async def connection() -> None:
        while time.perf_counter() < deadline:
            customer = load.customers[next(turn) % len(load.customers)]
            wait_s = await place(customer, load.products, phase)
            await asyncio.sleep(min(wait_s, max(0.0, deadline - time.perf_counter())))

    started = time.perf_counter()
    async with progress(phase, load.api, seconds):
        await asyncio.gather(*(connection() for _ in range(connections)))
    phase.seconds = time.perf_counter() - started
    return phase


async def open_loop(load: Load, rate: int, seconds: float) -> Phase:
    phase = Phase(f"open loop, {rate} orders/s")
    in_flight: set[asyncio.Task[float]] = set()  # an open loop ignores Retry-After
    started = time.perf_counter()
    async with progress(phase, load.api, seconds):
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            if len(in_flight) >= OPEN_CAP:
                phase.not_sent += 1
                continue
            customer = load.customers[n % len(load.customers)]
            task = asyncio.create_task(place(customer, load.products, phase))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    phase.seconds = time.perf_counter() - started
    return phase


# --- saying where the run is -------------------------------------------------------


def say(line: str) -> None:
    print(f"bench-orders: {line}", file=sys.stderr, flush=True)


async def terminal_count(api: asyncpg.Pool, ids: list[str]) -> int:
    return int(
        await api.fetchval(
            "SELECT /* bench */ count(*) FROM orders WHERE id = ANY($1::uuid[])"
            " AND status = ANY($2)",
            ids,
            list(TERMINAL),
        )
    )


@contextlib.asynccontextmanager
async def progress(phase: Phase, api: asyncpg.Pool, seconds: float) -> AsyncIterator[None]:
    """While the block runs: every PROGRESS_S, seconds left, placed and
    finished; every LAG_TICK_S, how late this process's loop woke a task
    (``phase.client_lag_ms``)."""
    ends = time.perf_counter() + seconds

    async def tell() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            ids = list(phase.sent_at)
            left = max(0.0, ends - time.perf_counter())
            say(
                f"{phase.name}: {left:.0f} s left, {len(ids)} placed, "
                f"{await terminal_count(api, ids)} confirmed or cancelled"
            )

    async def time_own_lag() -> None:
        while True:
            due = time.perf_counter() + LAG_TICK_S
            await asyncio.sleep(LAG_TICK_S)
            phase.client_lag_ms.append((time.perf_counter() - due) * 1000)

    tasks = [asyncio.create_task(tell()), asyncio.create_task(time_own_lag())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- where each order got to --------------------------------------------------------


async def follow(phase: Phase, api: asyncpg.Pool, notify: asyncpg.Pool) -> dict[str, Any]:
    """Wait until every order of ``phase`` got everywhere; its latencies."""
    reached = phase.reached
    ids = list(phase.sent_at)
    ended = time.time()
    drained_s: float | None = None
    told = time.time()
    expected = {name: len(ids) for name in vars(reached)} | {"indexed": len(phase.watched)}
    every = Reached()  # every order's first sight in the index (after the timed ones')
    async with aiohttp.ClientSession() as es:
        while time.time() - ended < DRAIN_TIMEOUT_S:
            await _read_databases(ids, api, notify, reached)
            if all(len(found) == expected[name] for name, found in vars(reached).items()):
                await _poll_index(es, ids, every)  # none left behind
                if len(every.indexed) == len(ids):
                    drained_s = time.time() - ended
                    break
            if time.time() - told >= PROGRESS_S:
                told = time.time()
                counts = ", ".join(
                    f"{len(found)}/{expected[name]} {name}" for name, found in vars(reached).items()
                )
                say(f"{phase.name}: draining ({time.time() - ended:.0f} s): {counts}")
            await asyncio.sleep(1.0)
        assert phase.watcher is not None
        phase.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await phase.watcher
        await _read_databases(ids, api, notify, reached)
        await _poll_index(es, ids, every)
    out: dict[str, Any] = {
        "drained_after_s": round(drained_s, 1) if drained_s is not None else None,
        "missing_after_drain": {
            name: len(ids) - len(found) for name, found in vars(reached).items()
        }
        | {"indexed": len(ids) - len(every.indexed)},
        "indexed_timed": len(reached.indexed),
    }
    for name, found in vars(reached).items():
        out[f"placement_to_{name}"] = summary(
            [(at - phase.sent_at[order]) * 1000 for order, at in found.items()]
        )
    return out


async def _watch_index(phase: Phase) -> None:
    async with aiohttp.ClientSession() as es:
        while True:
            await _poll_index(es, list(phase.watched), phase.reached)
            await asyncio.sleep(POLL_S)


async def _poll_index(es: aiohttp.ClientSession, ids: list[str], reached: Reached) -> None:
    waiting = [order for order in ids if order not in reached.indexed]
    for start in range(0, len(waiting), 1000):
        query = {
            "query": {"ids": {"values": waiting[start : start + 1000]}},
            "_source": ["status"],
            "size": 1000,
        }
        async with es.post(f"{ES}/orders/_search", json=query) as answer:
            hits = (await answer.json())["hits"]["hits"]
        now = time.time()
        for hit in hits:
            if hit["_source"]["status"] in TERMINAL:
                reached.indexed.setdefault(hit["_id"], now)


async def _read_databases(
    ids: list[str], api: asyncpg.Pool, notify: asyncpg.Pool, reached: Reached
) -> None:
    uuids = [uuid.UUID(order) for order in ids]
    for row in await api.fetch(
        "SELECT /* bench */ id::text, updated_at FROM orders"
        " WHERE id = ANY($1) AND status = ANY($2)",
        uuids,
        list(TERMINAL),
    ):
        reached.confirmed[row["id"]] = row["updated_at"].timestamp()
    # The orders still waiting, hash-joined: `data->>'order_id' = ANY($1)`
    # compared every notification with every id (1.3 s a poll on PostgreSQL's
    # CPU, counted against the stack's, once a second through each drain).
    waiting = [order for order in ids if order not in reached.emailed]
    for row in await notify.fetch(
        "SELECT /* bench */ o.id, n.created_at, d.sent_at"
        " FROM unnest($1::text[]) AS o(id)"
        " JOIN notifications n ON n.data->>'order_id' = o.id"
        " LEFT JOIN deliveries d"
        "   ON d.event_id = n.event_id AND d.channel = 'email' AND d.status = 'sent'",
        waiting,
    ):
        reached.feed[row["id"]] = row["created_at"].timestamp()
        if row["sent_at"] is not None:
            reached.emailed[row["id"]] = row["sent_at"].timestamp()


def summary(values_ms: list[float]) -> dict[str, float | int]:
    if not values_ms:
        return {"count": 0}
    ordered = sorted(values_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"count": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1.0)}


def finished_per_s(orders: int, seconds: float, drained_after_s: float | None) -> float:
    """The whole pipeline's rate: orders over the phase and its drain, until
    the last one was terminal, emailed, in its feed and indexed (a drain that
    did not end within ``DRAIN_TIMEOUT_S`` counts as that: a rate at most)."""
    drain = DRAIN_TIMEOUT_S if drained_after_s is None else drained_after_s
    return round(orders / (seconds + drain), 1)


def placed(phase: Phase) -> dict[str, Any]:
    return {
        "orders": len(phase.sent_at),
        "orders_per_s": round(len(phase.sent_at) / phase.seconds, 1),
        "http": summary(phase.latencies_ms),
        "refused": dict(phase.refused),
        "refusals_http": summary(phase.refused_ms),
        "client_loop_lag": summary(phase.client_lag_ms),
        "not_sent_over_cap": phase.not_sent,
    }


# --- the api instances' own view of the placements ------------------------------------

ORDERS_ROUTE = 'method="POST",route="/v1/orders"'
SLOW_S = 0.5  # the accepted p99 the issue asks for
REFUSED_S = 0.1  # how soon a refusal is to come


async def served(session: aiohttp.ClientSession) -> dict[str, float]:
    """Both api instances' counts from their /metrics. Placements: answered
    201, and answered (any status but 503) within ``SLOW_S`` and in all;
    refusals (503) answered within ``REFUSED_S`` and in all; each as the
    request middleware timed them (from the request's first middleware to
    its answer: what the client measures less the client, the network and
    the wait before the server reads the request). Admission: requests
    admitted and refused, and how many of each waited at most ``SLOW_S`` and
    ``REFUSED_S`` for their place (the rest of an answer's time is its
    handler's)."""
    counts = dict.fromkeys(
        (
            *("created", "within", "all", "admitted", "admitted_within"),
            *("refused", "refused_within", "answered_refused", "answered_refused_within"),
        ),
        0.0,
    )
    for port in API_PORTS:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            for line in (await answer.text()).splitlines():
                if line.startswith("tenx_admission_wait_seconds_bucket{"):
                    outcome = "admitted" if 'outcome="admitted"' in line else "refused"
                    within = SLOW_S if outcome == "admitted" else REFUSED_S
                    if f'le="{within}"' in line:
                        counts[f"{outcome}_within"] += float(line.rsplit(" ", 1)[1])
                    elif 'le="+Inf"' in line:
                        counts[outcome] += float(line.rsplit(" ", 1)[1])
                if ORDERS_ROUTE not in line:
                    continue
                value = float(line.rsplit(" ", 1)[1])
                if line.startswith("http_requests_total{") and 'status="201"' in line:
                    counts["created"] += value
                elif line.startswith("http_request_duration_seconds_bucket{"):
                    if 'status="503"' in line:  # refusals: answered within REFUSED_S
                        if f'le="{REFUSED_S}"' in line:
                            counts["answered_refused_within"] += value
                        elif 'le="+Inf"' in line:
                            counts["answered_refused"] += value
                    elif f'le="{SLOW_S}"' in line:
                        counts["within"] += value
                    elif 'le="+Inf"' in line:
                        counts["all"] += value
    return counts


def server_side(
    before: dict[str, float], after: dict[str, float], latencies_ms: list[float]
) -> dict[str, Any]:
    """Placements over ``SLOW_S``: the share of the 201s the servers timed so,
    beside the share the client timed so (every answer over it was a 201);
    and the share of admitted requests that waited over ``SLOW_S`` for their
    place, of refused ones over ``REFUSED_S`` before their 503."""

    def grew(key: str) -> float:
        return after[key] - before[key]

    def over(total: str, within: str) -> float:
        return round((grew(total) - grew(within)) / max(grew(total), 1), 4)

    client_slow = sum(1 for ms in latencies_ms if ms > SLOW_S * 1000)
    return {
        "accepted_over_500_ms_server": round(
            (grew("all") - grew("within")) / max(grew("created"), 1), 4
        ),
        "accepted_over_500_ms_client": round(client_slow / max(len(latencies_ms), 1), 4),
        "admitted_waited_over_500_ms": over("admitted", "admitted_within"),
        "refused_waited_over_100_ms": over("refused", "refused_within"),
        "refused_over_100_ms_server": over("answered_refused", "answered_refused_within"),
    }


# --- statements and commits per order, from pg_stat_statements -----------------------


async def statements(api: asyncpg.Pool) -> dict[str, Any]:
    """Calls of every statement the services ran (not this benchmark's own), by
    database, and each database's commits."""
    rows = await api.fetch(
        "SELECT /* bench */ d.datname, s.queryid, s.calls, s.query FROM pg_stat_statements s"
        " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname LIKE 'tenx%'"
    )
    commits = await api.fetch(
        "SELECT /* bench */ datname, xact_commit FROM pg_stat_database WHERE datname LIKE 'tenx%'"
    )
    return {
        "calls": {
            (row["datname"], row["queryid"]): (row["calls"], row["query"])
            for row in rows
            if "/* bench */" not in row["query"]
        },
        "commits": {row["datname"]: row["xact_commit"] for row in commits},
    }


def statements_per_order(
    before: dict[str, Any], after: dict[str, Any], orders: int
) -> dict[str, Any]:
    n = max(orders, 1)
    by_database: Counter[str] = Counter()
    by_statement: Counter[tuple[str, str]] = Counter()
    for key, (calls, query) in after["calls"].items():
        ran = calls - before["calls"].get(key, (0, ""))[0]
        by_database[key[0]] += ran
        by_statement[(key[0], " ".join(query.split())[:90])] += ran
    commits = {
        name: round((count - before["commits"].get(name, 0)) / n, 2)
        for name, count in after["commits"].items()
    }
    return {
        "statements_per_order": round(sum(by_database.values()) / n, 1),
        "by_database": {name: round(count / n, 2) for name, count in by_database.most_common()},
        "commits_per_order": commits,
        "top": [
            {"database": db, "statement": text, "per_order": round(count / n, 2)}
            for (db, text), count in by_statement.most_common(15)
        ],
    }


def cpu_per_order(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, Any]:
    per = {
        name: round((after[name] - before.get(name, 0.0)) * 1000 / max(orders, 1), 2)
        for name in after
    }
    stack_only = {name: ms for name, ms in per.items() if not name.startswith("(")}
    return {
        "ms_per_order": dict(sorted(per.items(), key=lambda item: -item[1])),
        "stack_ms_per_order": round(sum(stack_only.values()), 1),
    }


# --- pgbench: the database's own limit for the same shape ------------------------------


async def pgbench(settings: ApiSettings, clients: int) -> float:
    """Transactions per second of bench/order_shape.sql, ``clients`` at once."""
    command = [
        "pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", "15",
        "-f", str(ROOT / "bench" / "order_shape.sql"),
        "-D", f"products={PRODUCTS}", "-D", f"customers={CUSTOMERS}", await node_dsn(settings),
    ]  # fmt: skip
    out = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"tps = ([\d.]+)", out.stdout)
    assert found, out.stdout + out.stderr
    return round(float(found.group(1)), 1)


async def shape_tables(api: asyncpg.Pool) -> None:
    """bench_orders: the api's tables (with their indexes and keys) and real payloads.
    The quick form keeps a copy an earlier quick run left, while its tables
    still have the api's columns (a migration since makes a new one)."""
    if QUICK and await api.fetchval(
        "SELECT /* bench */ to_regclass('bench_orders.samples') IS NOT NULL"
        " AND NOT EXISTS (SELECT column_name, data_type FROM information_schema.columns"
        "  WHERE table_schema = 'public' AND table_name IN ('products', 'orders',"
        "   'order_items', 'idempotency_keys', 'outbox', 'sagas')"
        "  EXCEPT SELECT column_name, data_type FROM information_schema.columns"
        "  WHERE table_schema = 'bench_orders')"
    ):
        await place_order_copy(api)
        return
    async with api.acquire() as conn, conn.transaction():
        await conn.execute("DROP SCHEMA IF EXISTS bench_orders CASCADE; CREATE SCHEMA bench_orders")
        for table in ("products", "orders", "idempotency_keys", "outbox", "sagas"):
            await conn.execute(
                f"CREATE TABLE bench_orders.{table} (LIKE public.{table} INCLUDING ALL)"
            )
        await conn.execute(
            "CREATE TABLE bench_orders.order_items (LIKE public.order_items INCLUDING ALL,"
            " FOREIGN KEY (order_id) REFERENCES bench_orders.orders (id),"
            " FOREIGN KEY (product_id) REFERENCES bench_orders.products (id))"
        )
        await conn.execute("ALTER TABLE bench_orders.products ADD COLUMN n int UNIQUE")
        await conn.execute(
            "INSERT INTO bench_orders.products"
            " SELECT *, row_number() OVER (ORDER BY id) FROM public.products ORDER BY id LIMIT $1",
            PRODUCTS,
        )
        await conn.execute("UPDATE bench_orders.products SET stock = 1000000000")
        await conn.execute(
            "CREATE TABLE bench_orders.samples (type text, payload jsonb, headers jsonb);"
            "INSERT INTO bench_orders.samples"
            " (SELECT 'placed', payload, headers FROM outbox"
            "  WHERE type LIKE '%order.placed%' ORDER BY occurred_at DESC LIMIT 1)"
            " UNION ALL (SELECT 'answer', response_body, '{}' FROM idempotency_keys"
            "  ORDER BY created_at DESC LIMIT 1)"
        )
        kinds = await conn.fetchval("SELECT count(DISTINCT type) FROM bench_orders.samples")
        assert kinds == 2, "no order was placed yet: the payload samples are missing"
    await place_order_copy(api)


async def place_order_copy(api: asyncpg.Pool) -> None:
    """bench_orders.place_order: the api's function, word for word, run on the
    copies (its tables are named without a schema; the copy's search_path
    finds them in bench_orders)."""
    definition = await api.fetchval("SELECT pg_get_functiondef('public.place_order'::regproc)")
    copy, copies = re.subn(
        r"^CREATE OR REPLACE FUNCTION public\.place_order\(",
        "CREATE OR REPLACE FUNCTION bench_orders.place_order(",
        definition,
    )
    assert copies == 1, definition[:200]
    async with api.acquire() as conn, conn.transaction():
        await conn.execute(copy)
        await conn.execute(
            "ALTER FUNCTION bench_orders.place_order"
            "(uuid, text, text, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, text[])"
            " SET search_path = bench_orders"
        )


# --- the run ------------------------------------------------------------------------------


async def measure() -> dict[str, Any]:
    api_settings, notify_settings = ApiSettings(), NotifySettings()
    api = await asyncpg.create_pool(_dsn(api_settings), min_size=1, max_size=2)
    notify = await asyncpg.create_pool(_dsn(notify_settings), min_size=1, max_size=2)
    results: dict[str, Any] = {
        "customers": CUSTOMERS,
        "client_addresses": CUSTOMERS,
        "products": PRODUCTS,
        "seconds_per_phase": SECONDS,
        "trace_sample_ratio": float(TRACE_RATIO),
    }
    rows = await api.fetch(
        "SELECT id::text FROM products WHERE stock > 0 ORDER BY id LIMIT $1", PRODUCTS
    )
    products = [row["id"] for row in rows]
    await api.execute("UPDATE products SET stock = 1000000 WHERE id = ANY($1::uuid[])", products)
    signing_up = asyncio.Semaphore(16)  # the orders are measured here, not the sign-ups

    async def customer(n: int) -> Customer:
        async with signing_up:
            return await sign_up(n, products)

    say(f"{CUSTOMERS} customers signing up")
    customers = await asyncio.gather(*(customer(n) for n in range(CUSTOMERS)))
    load = Load(customers, products, api)
    try:
        warm = await closed_loop(load, 16, 5, "warm-up")
        await follow(warm, api, notify)
        await asyncio.sleep(5)
        results["idle_pss_mb_before"] = resident_mb()
        runs: list[tuple[str, Callable[[], Awaitable[Phase]]]] = [
            ("closed_16", lambda: closed_loop(load, 16, SECONDS, "closed loop, 16")),
            ("closed_64", lambda: closed_loop(load, 64, SECONDS, "closed loop, 64")),
            ("open", lambda: open_loop(load, RATE, SECONDS)),
            # Below what the pipeline keeps up with: the latencies of a stack
            # that is not overloaded (issue 34: 80 % of the rate at which the
            # closed loop of 16's orders were finished, drain included; the api
            # alone places them faster than the rest of the pipeline finishes them).
            ("open_sustained", lambda: open_loop(load, sustained(), SECONDS)),
        ]
        if PHASES or QUICK:
            runs = [run for run in runs if run[0] in (PHASES or ("closed_16", "open"))]

        def sustained() -> int:
            if "closed_16" not in results:
                return int(os.environ["TENX_BENCH_SUSTAINED_RATE"])
            return max(5, int(0.8 * results["closed_16"]["finished_per_s"]))

        for key, run in runs:
            async with aiohttp.ClientSession() as metrics:
                timed = await served(metrics)
                before, counted = cpu_seconds(), await statements(api)
                phase = await run()
                timed_after = await served(metrics)
            drained = await follow(phase, api, notify)
            after = cpu_seconds()
            results[key] = {
                "phase": phase.name,
                **placed(phase),
                **server_side(timed, timed_after, phase.latencies_ms),
                **drained,
                "finished_per_s": finished_per_s(
                    len(phase.sent_at), phase.seconds, drained["drained_after_s"]
                ),
                "cpu": cpu_per_order(before, after, len(phase.sent_at)),
                "postgres": statements_per_order(
                    counted, await statements(api), len(phase.sent_at)
                ),
            }
            say(f"{phase.name}: {json.dumps(results[key])}")
        await asyncio.sleep(5)
        results["idle_pss_mb_after"] = resident_mb()

        say("pgbench of the order shape")
        await shape_tables(api)
        try:
            for clients in (16,) if QUICK or PHASES else (16, 64):
                results[f"pgbench_order_shape_tps_{clients}"] = await pgbench(api_settings, clients)
        finally:
            if not (QUICK or PHASES):
                await api.execute("DROP SCHEMA IF EXISTS bench_orders CASCADE")

        if not (QUICK or PHASES):
            # Nothing runs the sagas in this phase: the backlog bound would
            # refuse every order after its first 10 s, so the api runs without it.
            settings = OVERRIDE.read_text()
            OVERRIDE.write_text(settings + "TENX_API_SAGA_BACKLOG_MAX_AGE_S=86400\n")
            restart(API)
            for name in DOWNSTREAM:
                stack("stop", name)
            try:
                alone = await closed_loop(load, 16, min(SECONDS, 30), "api alone")
            finally:
                OVERRIDE.write_text(settings)
                restart((*API, *DOWNSTREAM))
            results["api_alone_closed_16"] = {**placed(alone), **await follow(alone, api, notify)}
    finally:
        await asyncio.gather(*(customer.session.close() for customer in customers))
        await api.close()
        await notify.close()
    for key, clients in (("closed_16", 16), ("closed_64", 64), ("api_alone_closed_16", 16)):
        if key in results:
            tps = results[f"pgbench_order_shape_tps_{clients}"]
            results[key]["ratio_to_pgbench"] = round(results[key]["orders_per_s"] / tps, 3)
    return results


def pick(results: dict[str, Any], path: str) -> Any:
    found: Any = results
    for part in path.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


# The figures the performance issue judges: (what, unit, where in the results).
TABLE = (
    ("orders finished per second, closed loop of 16", "orders/s", "closed_16.finished_per_s"),
    ("orders placed per second, closed loop of 16", "orders/s", "closed_16.orders_per_s"),
    ("CPU per order, every process, closed loop of 16", "ms", "closed_16.cpu.stack_ms_per_order"),
    ("PostgreSQL statements per order", "", "closed_16.postgres.statements_per_order"),
    ("commits per order in tenx_api", "", "closed_16.postgres.commits_per_order.tenx_api"),
    ("placed / pgbench of the order shape (16)", "", "closed_16.ratio_to_pgbench"),
    ("the api alone / pgbench (16)", "", "api_alone_closed_16.ratio_to_pgbench"),
    ("closed loop of 16: to confirmed p50", "ms", "closed_16.placement_to_confirmed.p50_ms"),
    ("open loop: orders placed per second", "orders/s", "open.orders_per_s"),
    ("open loop: accepted HTTP p99", "ms", "open.http.p99_ms"),
    ("open loop: accepted over 500 ms, client", "", "open.accepted_over_500_ms_client"),
    ("open loop: accepted over 500 ms, server", "", "open.accepted_over_500_ms_server"),
    ("open loop: admitted after a wait over 500 ms", "", "open.admitted_waited_over_500_ms"),
    ("open loop: refused", "", "open.refused"),
    ("open loop: refusals answered within (p99)", "ms", "open.refusals_http.p99_ms"),
    ("open loop: refused after a wait over 100 ms", "", "open.refused_waited_over_100_ms"),
    ("sustained open loop: rate", "orders/s", "open_sustained.orders_per_s"),
    ("sustained: placement to confirmed p99", "ms", "open_sustained.placement_to_confirmed.p99_ms"),
    ("sustained: placement to email p99", "ms", "open_sustained.placement_to_emailed.p99_ms"),
    ("sustained: placement to indexed p99", "ms", "open_sustained.placement_to_indexed.p99_ms"),
    ("whole stack PSS at idle, after the run", "MB", "idle_pss_mb_after"),
)


def table(results: dict[str, Any]) -> str:
    """The judged figures, one line each; "-" for what this form does not measure."""
    width = max(len(what) for what, _, _ in TABLE)
    lines = []
    for what, unit, path in TABLE:
        value = pick(results, path)
        shown = "-" if value is None else f"{value} {unit}".strip()
        lines.append(f"  {what:<{width}}  {shown}")
    return "\n".join(lines)


def _dsn(settings: Any) -> str:
    """The primary's URL as libpq and asyncpg spell it, in session mode (the
    pooler's session entry, or the database itself): prepared statements hold."""
    url = settings.session_url().set(drivername="postgresql")
    return str(url.render_as_string(hide_password=False))


async def node_dsn(settings: Any) -> str:
    """The primary node itself, past any pooler: the database's own limit."""
    for url in settings.replica_url_list():
        dsn = str(url.set(drivername="postgresql").render_as_string(hide_password=False))
        conn = await asyncpg.connect(dsn)
        try:
            if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                return dsn
        finally:
            await conn.close()
    raise AssertionError("no node of REPLICA_URLS is the primary")


def main() -> None:
    OVERRIDE.write_text(
        "".join(
            f"TENX_{prefix}_TRACE_SAMPLE_RATIO={TRACE_RATIO}\n"
            for prefix in ("API", "AUTH", "NOTIFY", "SEARCH_INDEXER")
        )
    )
    try:
        say("restarting the services with traces sampled at 10 %")
        restart(PYTHON)
        results = asyncio.run(measure())
    finally:
        OVERRIDE.unlink(missing_ok=True)
        restart(PYTHON)
    results["measured_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    results["form"] = "quick" if QUICK else "full"
    if not PHASES:
        write("orders-quick" if QUICK else "orders", results)
    print(table(results))


if __name__ == "__main__":
    main()
