"""Overload, refused fast: admission (tenx_common.web.admission: how many
requests run at once, how long the others may wait, a burst against a
standing queue, what a refused request is answered) and the api's bound on
the saga backlog (tenx_api.service_layer.backlog)."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tenx_api.service_layer.backlog import SagaBacklog
from tenx_common.observability.metrics import Metrics
from tenx_common.runtime.app import admission_limit
from tenx_common.settings import PostgresSettings, ServiceSettings
from tenx_common.web.admission import KINDS, Admission, AdmissionMiddleware, kind_of
from tenx_common.web.problems import ProblemError
from tenx_common.web.problems import overloaded as overloaded_problem


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_no_more_than_the_limit_hold_a_place_and_the_next_one_waits_its_turn() -> None:
    admission = Admission(2, burst_wait_s=5)
    assert await admission.acquire()
    assert await admission.acquire()
    third = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0.01)
    assert not third.done()

    admission.release()

    assert await third
    assert admission.holders == 2


async def test_a_burst_waits_long_and_a_standing_queue_briefly() -> None:
    clock = Clock()
    admission = Admission(1, burst_wait_s=5, overload_wait_s=0.05, standing_s=0.1, clock=clock)
    assert await admission.acquire()
    assert admission.wait_allowed_s() == 5  # nothing waits: a burst begins
    first = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    clock.now += 0.05
    assert admission.wait_allowed_s() == 5  # queued for 50 ms: still a burst
    clock.now += 0.1
    assert admission.wait_allowed_s() == 0.05  # queued for 150 ms: overloaded

    admission.release()
    assert await first
    assert admission.wait_allowed_s() == 0.05  # empty for a moment: still overloaded
    clock.now += 0.2
    assert admission.wait_allowed_s() == 5  # empty for longer than the standing time: over


async def test_an_overload_that_empties_the_queue_for_moments_stays_an_overload() -> None:
    clock = Clock()
    admission = Admission(1, burst_wait_s=5, overload_wait_s=0.05, standing_s=0.1, clock=clock)
    assert await admission.acquire()
    for _ in range(5):  # arrivals that wait their short while, are refused, and empty the queue
        waiting = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        clock.now += 0.15
        allowed = admission.wait_allowed_s()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        clock.now += 0.05  # empty for less than the standing time
        assert allowed == 0.05
        assert admission.wait_allowed_s() == 0.05


async def overloaded(limit: int, clock: Clock) -> tuple[Admission, "asyncio.Task[bool]"]:
    """An admission of ``limit`` whose queue has stood past the standing time
    (its waits long, so a test decides who gets in)."""
    admission = Admission(
        limit, burst_wait_s=5, overload_wait_s=5, standing_s=0.1, target_s=0.2, clock=clock
    )
    for _ in range(limit):
        assert await admission.acquire()
    waiting = await queued(admission)
    clock.now += 0.15
    assert admission.wait_allowed_s() == admission.overload_wait_s
    return admission, waiting


async def queued(admission: Admission, kind: str = "") -> "asyncio.Task[bool]":
    waiting = asyncio.create_task(admission.acquire(kind))
    await asyncio.sleep(0)
    assert not waiting.done()
    return waiting


async def test_while_overloaded_slow_answers_cut_the_limit_and_fast_ones_raise_it() -> None:
    clock = Clock()
    admission, first = await overloaded(10, clock)

    admission.release(served_s=0.5)  # slow: the limit 10 -> 8
    admission.release(served_s=0.5)  # slowed together with it: no second cut
    assert admission.limit == 8
    assert not first.done()  # 8 holders: none under the limit
    admission.release(served_s=0.05)  # fast: 8 + 1/8; 7 holders, so its turn
    assert await first
    assert admission.holders == 8

    second = await queued(admission)
    for _ in range(7):  # slow, each a target's time after the last cut
        clock.now += 0.2
        admission.release(served_s=0.5)
    assert admission.limit == admission.min_limit == 2  # never below the least
    assert await second  # in once the holders were under the cut limit
    assert admission.holders == 2

    admission.release(served_s=0.05)  # fast: + 1/limit each
    admission.release(served_s=0.05)
    assert await admission.acquire()
    admission.release(served_s=0.05)
    assert admission.limit == 3  # 2 + 1/2 + 1/2.5 + 1/2.9


async def test_a_cut_limit_lets_a_waiter_in_only_once_the_holders_are_under_it() -> None:
    clock = Clock()
    admission, waiting = await overloaded(4, clock)
    admission.release(served_s=1.0)  # 4 -> 3.2: 3 holders, not under the limit
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.now += 0.2
    admission.release(served_s=1.0)  # 3.2 -> 2.56: 2 holders, at the limit
    await asyncio.sleep(0)
    assert not waiting.done()
    admission.release(served_s=0.01)  # 1 holder: its turn
    assert await waiting
    assert admission.holders == 2


async def test_the_limit_is_the_pools_again_once_the_overload_ends() -> None:
    clock = Clock()
    admission, waiting = await overloaded(10, clock)
    admission.release(served_s=1.0)
    admission.release(served_s=0.01)
    admission.release(served_s=0.01)
    assert await waiting
    assert admission.limit == 8

    clock.now += 0.2  # the queue empty for longer than the standing time
    admission.release(served_s=1.0)  # the overload is over: a slow answer cuts nothing
    assert admission.limit == 10


async def test_slow_answers_cut_nothing_when_there_is_no_overload() -> None:
    admission = Admission(10, burst_wait_s=5, target_s=0.2)
    for _ in range(10):  # a closed loop as large as the pool, each answer slow
        assert await admission.acquire()
    for _ in range(10):
        admission.release(served_s=2.0)
    assert admission.limit == 10


async def test_a_request_that_waited_its_while_is_refused_and_leaves_the_queue() -> None:
    admission = Admission(1, burst_wait_s=0.02)
    assert await admission.acquire()

    assert not await admission.acquire()

    admission.release()
    assert admission.holders == 0
    assert await admission.acquire()  # nobody stale in the queue took the place


async def test_past_the_longest_queue_a_request_is_refused_at_once() -> None:
    admission = Admission(1, burst_wait_s=5, max_queue=2)
    assert await admission.acquire()
    waiting = [asyncio.create_task(admission.acquire()) for _ in range(2)]
    await asyncio.sleep(0)

    refused = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    assert refused.done()
    assert refused.result() is False

    admission.release()
    admission.release()
    assert await asyncio.gather(*waiting) == [True, True]


async def test_a_request_cancelled_while_waiting_gives_up_its_turn() -> None:
    admission = Admission(1, burst_wait_s=5)
    assert await admission.acquire()
    leaving = asyncio.create_task(admission.acquire())
    staying = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)

    admission.release()

    assert await staying
    assert admission.holders == 1


async def test_a_request_whose_turn_would_come_too_late_is_refused_at_once() -> None:
    admission = Admission(2, burst_wait_s=5, max_wait_s=0.108)
    for kind, served_s in (("POST /v1/orders", 1.0), ("GET /v1/products", 0.01)):
        assert await admission.acquire(kind)
        admission.release(served_s, kind)  # what each kind takes, lately
    assert await admission.acquire("POST /v1/orders")
    assert await admission.acquire("POST /v1/orders")

    # A burst of cheap reads queues while their turns come within 108 ms
    # (each 10 ms, two places: the 21st's turn comes after 21 of them, 105 ms).
    reads = [await queued(admission, "GET /v1/products") for _ in range(21)]
    refused_read = asyncio.create_task(admission.acquire("GET /v1/products"))
    # An order behind them would wait longer still: refused without waiting.
    order = asyncio.create_task(admission.acquire("POST /v1/orders"))
    unknown = asyncio.create_task(admission.acquire("GET /v1/new"))  # taken as the slowest
    await asyncio.sleep(0)
    assert all(t.done() for t in (refused_read, order, unknown))
    assert [t.result() for t in (refused_read, order, unknown)] == [False] * 3

    for _ in range(2):
        admission.release(0.01, "GET /v1/products")
    assert await asyncio.gather(*reads[:2]) == [True, True]
    while admission.holders:  # each read served in turn
        admission.release(0.01, "GET /v1/products")
        await asyncio.sleep(0)
    assert await asyncio.gather(*reads[2:]) == [True] * 19
    assert admission.expected_wait_s(0) == 0  # nothing queued, nothing counted
    assert await admission.acquire("POST /v1/orders")
    assert await admission.acquire("POST /v1/orders")
    read = await queued(admission, "GET /v1/products")  # 5 ms, expected: it waits
    assert not await admission.acquire("POST /v1/orders")  # 0.5 s, even first in line
    admission.release(1.0, "POST /v1/orders")
    assert await read


def test_a_requests_kind_is_its_method_and_its_paths_first_two_segments() -> None:
    assert kind_of({"method": "GET", "path": "/v1/products/3f2a/reviews"}) == "GET /v1/products"
    assert kind_of({"method": "POST", "path": "/v1/orders"}) == "POST /v1/orders"
    assert kind_of({"method": "GET", "path": "/"}) == "GET /"


def test_the_service_times_kept_are_bounded_by_kind() -> None:
    admission = Admission(1, burst_wait_s=5, max_wait_s=0.1)
    for n in range(KINDS + 10):
        admission.holders = 1
        admission.release(0.001 * n, f"GET /path-{n}")
    assert admission.service_s(f"GET /path-{KINDS - 1}") == 0.001 * (KINDS - 1)
    assert admission.service_s(f"GET /path-{KINDS}") == 0.001 * (KINDS - 1)  # the slowest kept
    admission.holders = 1
    admission.release(0.5, "")  # no kind (a path that is no route): nothing learned
    assert admission.service_s("") == 0.001 * (KINDS - 1)


def app(admission: Admission, metrics: Metrics, gate: asyncio.Event) -> Starlette:
    async def slow(request: Request) -> Response:
        await gate.wait()
        return JSONResponse({"ok": True})

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
            await gate.wait()

        return StreamingResponse(body(), media_type="text/event-stream")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route("/slow", slow), Route("/stream", stream), Route("/healthz", healthz)]
    application = Starlette(routes=routes)
    application.add_middleware(AdmissionMiddleware, admission=admission, metrics=metrics)
    return application


def waits(metrics: Metrics, outcome: str) -> tuple[float, float]:
    """Admission's waits of one outcome: how many, and their sum in seconds."""
    count = metrics.registry.get_sample_value(
        "tenx_admission_wait_seconds_count", {"outcome": outcome}
    )
    total = metrics.registry.get_sample_value(
        "tenx_admission_wait_seconds_sum", {"outcome": outcome}
    )
    return count or 0.0, total or 0.0


async def test_beyond_capacity_the_answer_is_an_immediate_503_overloaded_with_retry_after() -> None:
    admission, metrics, gate = Admission(1, burst_wait_s=0.01), Metrics("test"), asyncio.Event()
    transport = httpx.ASGITransport(app=app(admission, metrics, gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)

        answer = await client.get("/slow")
        health = await client.get("/healthz")  # never held back
        gate.set()
        assert (await held).status_code == 200

    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "overloaded"
    assert health.status_code == 200
    assert metrics.refused.labels("overloaded")._value.get() == 1
    assert admission.holders == 0
    refusals, refusals_waited_s = waits(metrics, "refused")
    admitted, _ = waits(metrics, "admitted")
    assert refusals == 1
    assert 0.005 <= refusals_waited_s < 1  # it waited its while (10 ms), then 503
    assert admitted == 1  # the held request (health checks never queue)
    assert admission.service_s("GET /slow") >= 0.01  # learned from the one served


async def test_a_refusal_the_service_names_is_answered_before_any_wait_for_a_place() -> None:
    admission, metrics, gate = Admission(1, burst_wait_s=5), Metrics("test"), asyncio.Event()
    application = app(admission, metrics, gate)
    refusing = True

    def behind() -> ProblemError | None:
        return overloaded_problem("behind", retry_after_s=2) if refusing else None

    application.state.wiring = SimpleNamespace(refusals={"GET /slow": behind})
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = asyncio.create_task(client.get("/stream"))  # the one place, held
        await asyncio.sleep(0.01)
        async with asyncio.timeout(1):  # not the burst's 5 s
            answer = await client.get("/slow")
        refusing = False
        waiting = asyncio.create_task(client.get("/slow"))  # now it queues for the place
        await asyncio.sleep(0.01)
        assert not waiting.done()
        gate.set()
        assert (await waiting).status_code == 200
        await held

    assert answer.status_code == 503
    assert answer.json()["code"] == "overloaded"
    assert answer.headers["retry-after"] == "2"
    assert metrics.refused.labels("overloaded")._value.get() == 1
    assert waits(metrics, "refused") == (0.0, 0.0)  # it never stood in the queue


async def test_a_read_waits_its_turn_where_a_write_would_be_refused_at_once() -> None:
    admission = Admission(1, burst_wait_s=5, max_wait_s=0.01)
    for method in ("GET", "POST"):
        assert await admission.acquire(f"{method} /slow")
        admission.release(1.0, f"{method} /slow")  # each takes a second, lately
    metrics, gate = Metrics("test"), asyncio.Event()
    transport = httpx.ASGITransport(app=app(admission, metrics, gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)
        read = asyncio.create_task(client.get("/slow"))
        async with asyncio.timeout(1):
            write = await client.post("/slow")
        assert not read.done()  # queued, expected a second away
        gate.set()
        assert (await held).status_code == 200
        assert (await read).status_code == 200
    assert write.status_code == 503


async def test_a_stream_holds_its_place_only_until_its_answer_starts() -> None:
    admission, metrics, gate = Admission(1, burst_wait_s=0.01), Metrics("test"), asyncio.Event()
    middleware = app(admission, metrics, gate)
    started = asyncio.Event()

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # the client stays
        return {}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            started.set()

    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [],
             "query_string": b"", "root_path": ""}  # fmt: skip
    streaming = asyncio.create_task(middleware(scope, receive, send))  # type: ignore[arg-type]
    async with asyncio.timeout(2):
        await started.wait()
    assert admission.holders == 0  # the stream runs on, its place given back
    gate.set()
    async with asyncio.timeout(2):
        await streaming
    assert admission.holders == 0


def test_the_limit_is_the_primary_pool_unless_set() -> None:
    class WithDatabase(ServiceSettings, PostgresSettings):
        service_name: str = "t"

    assert admission_limit(WithDatabase()) == 10
    assert admission_limit(WithDatabase(database_pool_size=8, database_pool_overflow=2)) == 10
    assert admission_limit(WithDatabase(database_pool_size=3, database_pool_overflow=0)) == 3
    assert admission_limit(WithDatabase(max_concurrent_requests=40)) == 40
    assert admission_limit(ServiceSettings(service_name="t")) == 0


def test_new_orders_are_refused_only_past_the_backlog_bound() -> None:
    backlog = SagaBacklog(max_age_s=10.0)
    for age in (0.0, 9.9, 10.0):
        backlog.oldest_due_age_s = age
        assert backlog.refusal() is None
    backlog.oldest_due_age_s = 10.5
    refusal = backlog.refusal()
    assert refusal is not None
    assert (refusal.status, refusal.code) == (503, "overloaded")
    assert refusal.headers is not None
    assert int(refusal.headers["Retry-After"]) >= 1
    [gauge] = backlog.collect()
    assert gauge.samples[0].value == 10.5
