"""RFC 9457 problem details for every error a service returns.

Each problem has a stable ``code`` and a ``type`` URI built from it, so clients
can branch on either. An exception no handler answered is a 503 when it says a
dependency is down (``tenx_common.web.outages``: ``database_unavailable``,
``redis_unavailable``, ``kafka_unavailable``, ``elasticsearch_unavailable``,
with ``dependency`` and ``Retry-After``; one warning line), and otherwise a 500
``internal_error`` (logged with its stack trace). Neither body holds a trace.
A request refused for want of capacity is a 503 ``overloaded`` with
``Retry-After`` (``overloaded``).
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tenx_common.observability.logging import request_id_var
from tenx_common.web.outages import Dependency, find_outage

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:tenx:problem:"
# What a client is told to wait, in seconds, while something it needs is down.
RETRY_AFTER_S = 2
UNAVAILABLE_CODES: dict[Dependency, str] = {
    "postgres": "database_unavailable",
    "redis": "redis_unavailable",
    "kafka": "kafka_unavailable",
    "elasticsearch": "elasticsearch_unavailable",
}

log = logging.getLogger(__name__)


class ProblemError(Exception):
    """Raised by handlers to answer with a specific problem."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extensions = extensions or {}

    def response(self) -> JSONResponse:
        return problem_response(
            status=self.status,
            code=self.code,
            detail=self.detail,
            headers=self.headers,
            **self.extensions,
        )


def unavailable(*, dependency: Dependency) -> ProblemError:
    """The answer while ``dependency`` cannot be reached: retry shortly."""
    return ProblemError(
        status=503,
        code=UNAVAILABLE_CODES[dependency],
        detail=f"A service this request needs ({dependency}) is unavailable; retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        extensions={"dependency": dependency},
    )


def overloaded(detail: str, *, retry_after_s: int = 1) -> ProblemError:
    """The answer to a request refused because the platform is past what it can
    serve now (``tenx_common.web.admission``, a work backlog): retry later."""
    return ProblemError(
        status=503,
        code="overloaded",
        detail=detail,
        headers={"Retry-After": str(retry_after_s)},
    )


def unhandled_problem(exc: Exception, *, method: str, path: str) -> ProblemError:
    """What an exception no handler answered becomes, logged: 503 when a
    dependency is down (one line, no trace: it is not a bug), else 500."""
    outage = find_outage(exc)
    if outage is not None:
        log.warning(
            "%s unavailable on %s %s: %s",
            outage.dependency,
            method,
            path,
            outage.summary(),
            extra={"dependency": outage.dependency},
        )
        return unavailable(dependency=outage.dependency)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return ProblemError(status=500, code="internal_error", detail="An unexpected error occurred.")


def problem_response(
    *,
    status: int,
    code: str,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if (request_id := request_id_var.get()) is not None:
        body["request_id"] = request_id
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _code_for(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("'", "").replace("-", "_")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ProblemError):  # raised while FastAPI read the body
        return await _problem_error(request, exc.__cause__)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Each method of a path is its own route: the one that answered knows
        # only its own methods.
        headers["Allow"] = ", ".join(_methods_of(request))
    return problem_response(
        status=exc.status_code, code=_code_for(exc.status_code), detail=detail, headers=headers
    )


def _methods_of(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in exc.errors()
    ]
    return problem_response(
        status=422, code="validation_error", detail="The request is not valid.", errors=errors
    )


async def _problem_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return exc.response()


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    return unhandled_problem(exc, method=request.method, path=request.url.path).response()


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(Exception, _unhandled_error)
