"""Every error leaves a service as RFC 9457 problem+json, with the request id;
a dependency that is down is a 503 naming it, a bug a 500."""

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from elastic_transport import ConnectionTimeout as EsConnectionTimeout
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text

from tenx_common.data.db import create_engines
from tenx_common.runtime.app import create_service_app
from tenx_common.security.tokens import Principal
from tenx_common.settings import PostgresSettings, RateLimitSettings
from tenx_common.web.problems import ProblemError, install_problem_handlers
from tests.unit.conftest import CLOSED, FakeSettings, fake_bootstrap


class Widget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def _app(settings: FakeSettings) -> FastAPI:
    router = APIRouter()

    @router.post("/widgets", status_code=201)
    async def create_widget(widget: Widget) -> Widget:
        return widget

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @router.get("/teapot")
    async def teapot() -> None:
        raise ProblemError(status=409, code="out_of_stock", detail="Not enough stock.")

    return create_service_app(
        settings, title="fake", bootstrap=fake_bootstrap([]), routers=[router]
    )


def _assert_problem(response_json: dict[str, object], status: int, code: str) -> None:
    assert response_json["status"] == status
    assert response_json["code"] == code
    assert response_json["type"] == f"urn:tenx:problem:{code}"
    assert isinstance(response_json["title"], str)
    assert response_json["title"]


def test_unknown_route_is_a_404_problem(settings: FakeSettings) -> None:
    with TestClient(_app(settings)) as client:
        response = client.get("/nope", headers={"X-Request-Id": "req-123"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-123"
    _assert_problem(response.json(), 404, "not_found")
    assert response.json()["request_id"] == "req-123"


def test_wrong_method_is_a_405_problem(settings: FakeSettings) -> None:
    with TestClient(_app(settings)) as client:
        response = client.delete("/widgets")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    _assert_problem(response.json(), 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


def test_invalid_body_is_a_422_problem_naming_the_field(settings: FakeSettings) -> None:
    with TestClient(_app(settings)) as client:
        response = client.post("/widgets", json={"name": "x", "price": 1})
    assert response.status_code == 422
    body = response.json()
    _assert_problem(body, 422, "validation_error")
    assert ["body", "price"] in [error["loc"] for error in body["errors"]]


def test_unhandled_exception_is_a_500_problem_without_internals(settings: FakeSettings) -> None:
    with TestClient(_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-Id": "req-boom"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-boom"
    _assert_problem(response.json(), 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


def test_raised_problem_keeps_its_code(settings: FakeSettings) -> None:
    with TestClient(_app(settings)) as client:
        response = client.get("/teapot")
    assert response.status_code == 409
    _assert_problem(response.json(), 409, "out_of_stock")
    assert response.json()["detail"] == "Not enough stock."


# --- a dependency that is down: 503, never 500 ---------------------------------


def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    for handler in logging.getLogger().handlers:  # info lines are buffered up to 0.5 s
        handler.flush()
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _outage_app(settings: FakeSettings) -> FastAPI:
    router = APIRouter()

    @router.post("/orders")
    async def place_order() -> None:
        engines = create_engines(
            PostgresSettings(database_url=f"postgresql+asyncpg://x@{CLOSED}/x")
        )
        try:
            async with engines.primary.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engines.dispose()

    @router.get("/cached")
    async def cached() -> None:
        try:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        except RedisConnectionError as exc:
            raise RuntimeError("the cache failed") from exc

    return create_service_app(
        settings, title="fake", bootstrap=fake_bootstrap([]), routers=[router]
    )


def _assert_unavailable(response: Any, *, code: str, dependency: str) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    _assert_problem(response.json(), 503, code)
    assert response.json()["dependency"] == dependency
    assert "Traceback" not in response.text


def test_a_database_that_is_down_is_a_503_problem_and_one_warning_line(
    settings: FakeSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(_outage_app(settings), raise_server_exceptions=False) as client:
        capsys.readouterr()
        response = client.post("/orders", headers={"X-Request-Id": "req-down"})
    _assert_unavailable(response, code="database_unavailable", dependency="postgres")
    assert response.headers["x-request-id"] == "req-down"
    assert response.json()["request_id"] == "req-down"
    lines = _log_lines(capsys)
    [warning] = [line for line in lines if line["level"] in ("warning", "error")]
    assert warning["level"] == "warning"
    assert warning["dependency"] == "postgres"
    assert "ConnectionRefusedError" in warning["msg"]
    assert "POST /orders" in warning["msg"]
    assert "exc" not in warning
    assert "Traceback" not in json.dumps(warning)


def test_an_outage_under_a_wrapping_exception_is_still_a_503(settings: FakeSettings) -> None:
    with TestClient(_outage_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/cached")
    _assert_unavailable(response, code="redis_unavailable", dependency="redis")


def test_a_genuine_bug_is_still_a_500_logged_with_its_trace(
    settings: FakeSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(_app(settings), raise_server_exceptions=False) as client:
        capsys.readouterr()
        response = client.get("/boom")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    [error] = [line for line in _log_lines(capsys) if line["level"] == "error"]
    assert "RuntimeError" in error["exc"]


def test_the_handlers_alone_answer_an_outage_with_a_503() -> None:
    # Without the request middleware (which answers first in a service app),
    # the app's own handler for exceptions says the same.
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/search")
    async def search() -> None:
        raise EsConnectionTimeout("Connection timed out")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/search")
    _assert_unavailable(response, code="elasticsearch_unavailable", dependency="elasticsearch")


class _DenylistDown:
    async def signed(self, token: str) -> Principal:
        return Principal(user_id=uuid.uuid4(), roles=frozenset(), token_id="t", expires_at=0)

    async def revoked(self, principal: Principal) -> bool:
        raise RedisConnectionError("Connection refused")


class _LimitedSettings(RateLimitSettings, FakeSettings):
    pass


def test_an_outage_inside_the_asgi_middleware_is_a_503() -> None:
    # The rate limiter checks a bearer token (the denylist is in Redis) beside
    # its own Redis call: the denylist's outage is the answer, though the
    # bucket's call failed otherwise.
    @asynccontextmanager
    async def bootstrap(_: _LimitedSettings) -> AsyncIterator[Any]:
        yield SimpleNamespace(checks=[], collectors=[], redis=object(), verifier=_DenylistDown())

    app = create_service_app(_LimitedSettings(), title="fake", bootstrap=bootstrap)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/nope", headers={"Authorization": "Bearer t"})
    _assert_unavailable(response, code="redis_unavailable", dependency="redis")
