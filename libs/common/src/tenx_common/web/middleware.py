"""Pure ASGI middleware for every request: request id, server span, access log,
RED metrics, all in one layer (each ASGI layer wraps every message again).

The server span honours an incoming W3C ``traceparent``; it is named by the
route template once routing has matched. An unhandled exception becomes a
problem that still carries the request id (a 503 when a dependency is down, else
a 500: ``tenx_common.web.problems.unhandled_problem``), so no stack trace reaches a
client.

The request id is the client's ``X-Request-Id`` when it is 1 to 128 of
``[A-Za-z0-9._:-]``, else 128 random bits (unique, not secret); it is logged
and returned. A request holding a NUL character (in its path, query or body,
raw or as JSON's escape of it, also split across two body chunks) is refused
with 422 ``nul_character`` before a handler runs: PostgreSQL text cannot hold
one. ``/healthz``, ``/readyz`` and ``/metrics`` are neither traced nor logged.
"""

import random
import re
import time
from contextlib import nullcontext
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenx_common.observability.logging import log_access, request_id_var
from tenx_common.observability.metrics import Metrics
from tenx_common.web.problems import ProblemError, problem_response, unhandled_problem

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # not logged, not traced
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_NUL = "\x00"
_NUL_ESCAPE = b"\\u0000"  # JSON's escape of it


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, tracer: Tracer | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A request id needs to be unique, not unguessable: no urandom call per request.
        request_id = _incoming_request_id(scope) or f"{random.getrandbits(128):032x}"
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with self._server_span(scope) as span:
            try:
                if _NUL in scope["path"] or b"%00" in scope["query_string"].lower():
                    await problem_response(**_NUL_PROBLEM)(scope, receive, send_with_id)
                    return
                await self.app(scope, _refusing_nul(receive), send_with_id)
            except Exception as exc:
                if span is not None:
                    span.record_exception(exc)
                problem = unhandled_problem(exc, method=scope["method"], path=scope["path"])
                if response_started:  # too late for a problem: the connection is dropped
                    raise
                await problem.response()(scope, receive, send_with_id)
            finally:
                self._record(scope, span, status, time.perf_counter() - started)
                request_id_var.reset(token)

    def _server_span(self, scope: Scope) -> Any:
        if self.tracer is None or scope["path"] in _QUIET_PATHS:
            return nullcontext()
        carrier = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        return self.tracer.start_as_current_span(
            scope["method"],
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
            record_exception=False,
            set_status_on_exception=False,
        )

    def _record(self, scope: Scope, span: Span | None, status: int, seconds: float) -> None:
        route = _route_template(scope)
        method = scope["method"]
        self.metrics.observe_request(method=method, route=route, status=status, seconds=seconds)
        if span is not None:
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
        if scope["path"] not in _QUIET_PATHS:
            log_access(
                f"{method} {scope['path']} {status}",
                {"route": route, "status": status, "duration_ms": round(seconds * 1000, 2)},
            )


_NUL_PROBLEM: dict[str, Any] = {
    "status": 422,
    "code": "nul_character",
    "detail": "The request holds a NUL character.",
}


def _refusing_nul(receive: Receive) -> Receive:
    """The body's chunks, refused when one holds a NUL character, raw or as
    JSON's escape (PostgreSQL text cannot store it; nothing needs it). The
    last bytes of each chunk are kept, so an escape split across two chunks
    is seen too."""
    tail = b""

    async def checked() -> Message:
        nonlocal tail
        message = await receive()
        body = message.get("body", b"")
        if body:
            window = tail + body
            if _NUL_ESCAPE in window or b"\x00" in body:
                raise ProblemError(**_NUL_PROBLEM)
            tail = window[-(len(_NUL_ESCAPE) - 1) :]
        return message

    return checked


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so metrics labels stay bounded."""
    if (route := scope.get("route")) is not None:
        return str(getattr(route, "path", "unmatched"))
    app: Any = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"
