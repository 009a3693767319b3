"""A dependency that is down is a 503 naming it, never a 500, and fast.

Each test stops one dependency with the stack's own ``stop`` (supervisord
stops it as an operator would), sends every service the requests that need
it and some that do not, straight to the instances, and then starts it
again and waits until every service is ready. What each answer must be is the
table ``EXPECTED``: a status, and for a 503 the problem's code (with
``Retry-After``, the ``dependency`` field and no stack trace). Each service's
``/readyz`` must name the dependency as down.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import processes
from tests.support.stack import (
    STRONG,
    admin,
    new_key,
    new_product,
    order_body,
    sign_up,
    stack,
)

API, AUTH, NOTIFY, INDEXER = (
    f"http://127.0.0.1:{processes.port(name)}"
    for name in ("api-1", "auth", "notify", "search-indexer")
)
# Every Python process of the stack and its port: ready again after each test.
PROCESSES = {name: processes.port(name) for name in processes.names(kind="service")}
# No answer may take longer than this while its dependency is down: the
# connect and pool timeouts (a few seconds) plus slack for a busy machine.
DEADLINE_S = 15.0


@dataclass(frozen=True)
class Fixture:
    user: dict[str, str]
    email: str
    admin: dict[str, str]
    product: str


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    url: str
    body: dict[str, Any] | None = None
    as_user: bool = True
    keyed: bool = False


def calls(f: Fixture) -> list[Call]:
    return [
        Call("api: place an order", "POST", f"{API}/v1/orders", order_body(f.product), keyed=True),
        Call("api: cached product read", "GET", f"{API}/v1/products/{f.product}", as_user=False),
        Call("api: search", "GET", f"{API}/v1/search/products?q=espresso", as_user=False),
        Call(
            "auth: log in",
            "POST",
            f"{AUTH}/v1/auth/token",
            {"email": f.email, "password": STRONG},
            as_user=False,
        ),
        Call("auth: liveness", "GET", f"{AUTH}/healthz", as_user=False),
        Call(
            "notify: preferences",
            "PUT",
            f"{NOTIFY}/v1/notifications/preferences",
            {"email": True, "in_app": True},
        ),
        Call("notify: liveness", "GET", f"{NOTIFY}/healthz", as_user=False),
    ]


# dependency -> call -> the status (and for a 503, the code) it must answer.
EXPECTED: dict[str, dict[str, tuple[int, str | None]]] = {
    # The whole database: every node of the cluster (one lost node fails
    # over instead: make failover-drill).
    "postgres": {
        "api: place an order": (503, "database_unavailable"),
        "api: cached product read": (200, None),
        "api: search": (200, None),
        "auth: log in": (503, "database_unavailable"),
        "auth: liveness": (200, None),
        "notify: preferences": (503, "database_unavailable"),
        "notify: liveness": (200, None),
    },
    # Rate limits cannot be checked without Redis: every limited route is
    # refused (they fail closed: tenx_common.security.throttle); liveness answers.
    "redis": {
        "api: place an order": (503, "redis_unavailable"),
        "api: cached product read": (503, "redis_unavailable"),
        "api: search": (503, "redis_unavailable"),
        "auth: log in": (503, "redis_unavailable"),
        "auth: liveness": (200, None),
        "notify: preferences": (503, "redis_unavailable"),
        "notify: liveness": (200, None),
    },
    # No request waits for Kafka: events go through the outbox.
    "kafka": {
        "api: place an order": (201, None),
        "api: cached product read": (200, None),
        "api: search": (200, None),
        "auth: log in": (200, None),
        "auth: liveness": (200, None),
        "notify: preferences": (200, None),
        "notify: liveness": (200, None),
    },
    "elasticsearch": {
        "api: place an order": (201, None),
        "api: cached product read": (200, None),
        "api: search": (503, "elasticsearch_unavailable"),
        "auth: log in": (200, None),
        "auth: liveness": (200, None),
        "notify: preferences": (200, None),
        "notify: liveness": (200, None),
    },
}
# dependency -> the readiness check that names it, and the processes whose
# /readyz must then be 503 with that check down.
READINESS: dict[str, tuple[str, list[str]]] = {
    "postgres": ("postgres", list(PROCESSES)),
    "redis": ("redis", [name for name in PROCESSES if name != "search-indexer"]),
    "kafka": ("kafka", list(PROCESSES)),
    "elasticsearch": ("elasticsearch", ["api-1", "api-2", "search-indexer", "api-worker"]),
}


@pytest.fixture(scope="module")
async def shop() -> AsyncIterator[Fixture]:
    edge_url = f"http://127.0.0.1:{processes.port('edge')}"
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as edge:
        operator = await admin(edge)
        product = await new_product(edge, operator, stock=1000)
        email, pair = await sign_up(edge, "outage")
        user = {"Authorization": f"Bearer {pair['access_token']}"}
        for _ in range(2):  # read once, so both instances may serve it from the cache
            assert (await edge.get(f"/v1/products/{product}")).status_code == 200
        # notify verifies tokens against auth's keys: fetched now, cached after
        assert (await edge.get("/v1/notifications/preferences", headers=user)).status_code == 200
        yield Fixture(user=user, email=email, admin=operator, product=product)


async def answer(client: httpx.AsyncClient, call: Call, f: Fixture) -> tuple[httpx.Response, float]:
    headers = (f.user if call.as_user else {}) | (new_key() if call.keyed else {})
    started = time.monotonic()
    response = await client.request(call.method, call.url, json=call.body, headers=headers)
    return response, time.monotonic() - started


def verdict(response: httpx.Response, want: tuple[int, str | None]) -> str:
    """Empty when the answer is what the table wants, else what is wrong."""
    status, code = want
    if response.status_code != status:
        return f"answered {response.status_code} {response.text[:200]}"
    if status != 503:
        return ""
    problem = response.json()
    wrong = []
    if response.headers.get("content-type") != "application/problem+json":
        wrong.append(f"content-type {response.headers.get('content-type')}")
    if problem.get("code") != code:
        wrong.append(f"code {problem.get('code')}")
    if not response.headers.get("retry-after", "").isdigit():
        wrong.append("no Retry-After")
    if not problem.get("dependency"):
        wrong.append("no dependency named")
    if "Traceback" in response.text or 'File "' in response.text:
        wrong.append("a stack trace in the body")
    return ", ".join(wrong)


async def all_ready(timeout_s: float = 120) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        deadline = time.monotonic() + timeout_s
        for name, port in PROCESSES.items():
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{name} not ready again"
                await asyncio.sleep(0.5)


@pytest.mark.parametrize("dependency", list(EXPECTED))
async def test_requests_while_a_dependency_is_down(dependency: str, shop: Fixture) -> None:
    await all_ready()
    table: list[str] = []
    failures: list[str] = []
    await stack("stop", dependency)
    try:
        async with httpx.AsyncClient(timeout=DEADLINE_S * 2) as client:
            for call in calls(shop):
                response, took = await answer(client, call, shop)
                wrong = verdict(response, EXPECTED[dependency][call.name])
                if took > DEADLINE_S:
                    wrong += f" (took {took:.1f} s)"
                code = response.json().get("code") if response.status_code >= 400 else ""
                table.append(
                    f"{dependency} | {call.name} | {response.status_code} {code} | {took:.2f} s"
                )
                if wrong:
                    failures.append(f"{call.name}: {wrong}")
            check, names = READINESS[dependency]
            for name in names:
                ready = await client.get(f"http://127.0.0.1:{PROCESSES[name]}/readyz")
                checks = ready.json().get("checks", {})
                state = f"{check}={checks.get(check)}"
                table.append(f"{dependency} | {name} /readyz | {ready.status_code} {state}")
                if ready.status_code != 503 or checks.get(check) != "down":
                    failures.append(f"{name} /readyz answered {ready.status_code} {checks}")
    finally:
        await stack("start", dependency)
        await all_ready()
    print("\n" + "\n".join(table))
    assert failures == [], "\n".join(table)
