"""Admission: a process serves at most as many requests at once as its
database pool can (``max_concurrent_requests``, by default the primary pool's
connections); more wait in a queue, and one that cannot be served soon is
answered at once with 503 ``overloaded`` and ``Retry-After`` rather than
waiting for a pooled connection (SQLAlchemy's checkout waits up to 30 s).

How long a request may wait is a controlled delay (the queue of Facebook's
"Fail at Scale", after CoDel). While the queue has been empty within the last
``STANDING_S``, it is absorbing a burst: a request waits up to
``admission_burst_wait_s``. Once the queue has stood for longer, the process
is overloaded: a request waits ``OVERLOAD_WAIT_S`` at most, and it stays so
until the queue has stayed empty for ``STANDING_S`` (an overload empties the
queue for moments, as its short waits end; those moments are not a new
burst, or every one would let requests wait seconds again). So a burst of
hundreds of orders for one product is served in full, while a sustained
overload is refused within tens of milliseconds and the requests admitted
keep short latencies. Past ``MAX_QUEUE`` waiting, a request is refused at once.

A write is also refused at once when its turn would come later than
``max_wait_s``: the service times of the requests queued ahead of it and its
own (each kind's, by method and the path's first two segments, as lately
seen), shared among the places. So at the start of an overload of orders,
before the queue has stood long enough to call it one, an order that would
wait seconds for its place is answered at once instead (its client sends it
again with its Idempotency-Key), which was the tail of accepted latencies.
Reads wait their turn as a burst allows: they come in bursts (a page's
requests, a client's pool) and each is cheap, so the estimate of a burst's
drain, made before its first answers, is not worth refusing them on.

While overloaded, the limit adapts (additive increase, multiplicative
decrease, as TCP's congestion window): a request served within
``TARGET_S`` (from its admission to its answer's start) raises the limit by
``1/limit``; a slower one cuts it by a fifth, at most once per ``TARGET_S``,
down to ``MIN_LIMIT``. On two busy cores the pool's ten connections are ten
requests sharing the same CPU, each taking ten times as long; fewer at once
serve about as many a second, each sooner, and the rest are refused at
once instead of being slow. When the overload ends the limit is the pool's
again: a closed loop of clients that never outruns the pool is never cut.

A service may refuse a kind of request before it takes a place (its
wiring's ``refusals``, such as the api's orders while the saga backlog is
past its bound): answered at once, never after a wait for a place.

A request holds its place from admission until its answer starts (a handler
has released its database connection by then), so a long stream (Server-Sent
Events) does not hold one. ``/healthz``, ``/readyz`` and ``/metrics`` are
never held back. Refusals are counted in
``tenx_requests_refused_total{reason="overloaded"}``, and every request's wait
for its place in ``tenx_admission_wait_seconds{outcome}`` (admitted or refused).
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenx_common.observability.metrics import Metrics
from tenx_common.web.problems import overloaded

# A queue that has not emptied for this long is an overload: longer than a
# request takes at load (an Argon2 sign-up, an order under contention).
STANDING_S = 0.5
OVERLOAD_WAIT_S = 0.02  # a request's wait while overloaded
TARGET_S = 0.2  # while overloaded: an admitted request's time the limit aims under
MIN_LIMIT = 2
MAX_QUEUE = 2000  # requests waiting, at most
KINDS = 64  # request kinds whose service time is kept (any path may be asked for)
SMOOTHING = 0.2  # the weight of each new service time in its kind's average
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})  # wait their turn as a burst allows


class Admission:
    """At most ``limit`` holders at once; the others wait in order, each for as
    long as the queue's state allows when it arrives."""

    def __init__(
        self,
        limit: int,
        *,
        burst_wait_s: float,
        overload_wait_s: float = OVERLOAD_WAIT_S,
        standing_s: float = STANDING_S,
        max_queue: int = MAX_QUEUE,
        target_s: float = TARGET_S,
        min_limit: int = MIN_LIMIT,
        max_wait_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_limit = limit
        self.target_s = target_s
        self.min_limit = min(min_limit, limit)
        self._limit = float(limit)
        self._cut_at = float("-inf")
        self.burst_wait_s = burst_wait_s
        self.overload_wait_s = overload_wait_s
        self.standing_s = standing_s
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.holders = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._served_s: dict[str, float] = {}  # by kind: a smoothed service time
        self._queued_s = 0.0  # the waiting requests' expected service, summed
        self._expected: dict[asyncio.Future[None], float] = {}  # each one's part of it
        self._queued_since: float | None = None  # when the queue last stopped being empty
        self._emptied_at = self.clock()  # when it last became empty
        self._overloaded = False

    @property
    def limit(self) -> int:
        """Requests served at once, now."""
        return int(self._limit)

    def service_s(self, kind: str) -> float:
        """A request's expected service time: its kind's, lately; for a kind
        not seen yet, the slowest kind's."""
        if kind in self._served_s:
            return self._served_s[kind]
        return max(self._served_s.values(), default=0.0)

    def expected_wait_s(self, service_s: float) -> float:
        """How long a request that takes ``service_s`` would wait for its
        place, arriving now: the queued work and its own, over the places."""
        return (self._queued_s + service_s) / self._limit

    def wait_allowed_s(self, service_s: float | None = 0.0) -> float | None:
        """How long a request arriving now that takes ``service_s`` (None: not
        bounded by its expected wait) may wait; None: refused at once."""
        if len(self._waiting) >= self.max_queue:
            return None
        if (
            self.max_wait_s is not None
            and service_s is not None
            and self.expected_wait_s(service_s) > self.max_wait_s
        ):
            return None
        self._update(self.clock())
        return self.overload_wait_s if self._overloaded else self.burst_wait_s

    def _update(self, now: float) -> None:
        """Overloaded once the queue has stood ``standing_s``; no longer once
        it has stayed empty as long (the limit the pool's again)."""
        if self._waiting:
            since = self._queued_since
            if since is not None and now - since > self.standing_s:
                self._overloaded = True
        elif self._overloaded and now - self._emptied_at >= self.standing_s:
            self._overloaded = False
            self._limit = float(self.max_limit)

    async def acquire(self, kind: str = "", *, bounded: bool = True) -> bool:
        """Take a place (True), or False when the request is to be refused;
        ``bounded``: refused at once when its turn would come after ``max_wait_s``."""
        if self.holders < self.limit and not self._waiting:
            self.holders += 1
            return True
        service_s = self.service_s(kind)
        wait_s = self.wait_allowed_s(service_s if bounded else None)
        if wait_s is None:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._queued_since = self.clock()
        self._waiting.append(turn)
        self._expected[turn] = service_s
        self._queued_s += service_s
        try:
            async with asyncio.timeout(wait_s):
                await turn
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return True  # handed a place just as its wait ran out
            self._leave(turn)
            return False
        except BaseException:  # cancelled (the client left) while waiting
            if turn.done() and not turn.cancelled():
                self.release()
            else:
                self._leave(turn)
            raise
        return True

    def release(self, served_s: float | None = None, kind: str = "") -> None:
        """Give the place back (after ``served_s`` of service, which adapts the
        limit while overloaded and is the kind's expected service time): to the
        requests still waiting, as many as the limit lets in."""
        self.holders -= 1
        self._update(self.clock())
        if served_s is not None:
            self._learn(kind, served_s)
            if self._overloaded:
                self._adapt(served_s)
        while self._waiting and self.holders < self.limit:
            turn = self._waiting.popleft()
            self._unqueue(turn)
            if not turn.done():
                turn.set_result(None)
                self.holders += 1
        self._note_if_empty()

    def _learn(self, kind: str, served_s: float) -> None:
        if not kind:
            return
        known = self._served_s.get(kind)
        if known is not None:
            self._served_s[kind] = known + SMOOTHING * (served_s - known)
        elif len(self._served_s) < KINDS:
            self._served_s[kind] = served_s

    def _unqueue(self, turn: "asyncio.Future[None]") -> None:
        self._queued_s -= self._expected.pop(turn, 0.0)

    def _adapt(self, served_s: float) -> None:
        if served_s <= self.target_s:
            self._limit = min(float(self.max_limit), self._limit + 1 / self._limit)
            return
        now = self.clock()
        if now - self._cut_at >= self.target_s:  # one cut for the requests slowed together
            self._cut_at = now
            self._limit = max(float(self.min_limit), self._limit * 0.8)

    def _leave(self, turn: "asyncio.Future[None]") -> None:
        if turn in self._waiting:
            self._waiting.remove(turn)
            self._unqueue(turn)
        self._note_if_empty()

    def _note_if_empty(self) -> None:
        if not self._waiting:
            self._queued_s = 0.0  # no rounding left behind
        if not self._waiting and self._queued_since is not None:
            self._queued_since = None
            self._emptied_at = self.clock()


def kind_of(scope: Scope) -> str:
    """A request's kind, for its expected service time: its method and its
    path's first two segments (``GET /v1/products``)."""
    return f"{scope['method']} {'/'.join(scope['path'].split('/', 3)[:3])}"


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, *, admission: Admission, metrics: Metrics) -> None:
        self.app = app
        self.admission = admission
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        arrived, kind = self.admission.clock(), kind_of(scope)
        wiring = getattr(getattr(scope.get("app"), "state", None), "wiring", None)
        early = getattr(wiring, "refusals", {}).get(f"{scope['method']} {scope['path']}")
        if early is not None and (refusal := early()) is not None:
            self.metrics.refused.labels("overloaded").inc()
            await refusal.response()(scope, receive, send)
            return
        if not await self.admission.acquire(kind, bounded=scope["method"] not in READS):
            self.metrics.admission_wait.labels("refused").observe(self.admission.clock() - arrived)
            self.metrics.refused.labels("overloaded").inc()
            refusal = overloaded("This instance is at capacity; retry shortly.")
            await refusal.response()(scope, receive, send)
            return
        held, admitted = True, self.admission.clock()
        self.metrics.admission_wait.labels("admitted").observe(admitted - arrived)

        def let_go(status: int = 500) -> None:
            nonlocal held
            if held:
                held = False
                # A path that is no route is no kind to learn (any path may be asked for).
                self.admission.release(
                    self.admission.clock() - admitted, kind if status != 404 else ""
                )

        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.start":
                let_go(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            let_go()
