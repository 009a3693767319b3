"""RED metrics per route template; JSON logs carrying the request id."""

import json
import logging

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenx_common.observability.logging import JsonFormatter, request_id_var
from tenx_common.runtime.app import create_service_app
from tests.unit.conftest import FakeSettings, fake_bootstrap


def test_metrics_count_requests_by_route_template(settings: FakeSettings) -> None:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app = create_service_app(settings, title="fake", bootstrap=fake_bootstrap([]), routers=[router])
    with TestClient(app) as client:
        for item_id in (1, 2, 3):
            assert client.get(f"/items/{item_id}").status_code == 200
        client.get("/missing")
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'http_requests_total{method="GET",route="/items/{item_id}",status="200"} 3.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text


def test_request_id_is_generated_when_absent_or_unsafe(settings: FakeSettings) -> None:
    app = create_service_app(settings, title="fake", bootstrap=fake_bootstrap([]))
    with TestClient(app) as client:
        generated = client.get("/healthz").headers["x-request-id"]
        unsafe = client.get("/healthz", headers={"X-Request-Id": "bad id\n"}).headers[
            "x-request-id"
        ]
    assert len(generated) == 32
    assert unsafe != "bad id\n"
    assert len(unsafe) == 32


def test_json_log_line_has_request_id_and_extras() -> None:
    formatter = JsonFormatter(service="api")
    record = logging.LogRecord("tenx", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.route = "/v1/x"
    token = request_id_var.set("req-42")
    try:
        line = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello you"
    assert line["service"] == "api"
    assert line["level"] == "info"
    assert line["request_id"] == "req-42"
    assert line["route"] == "/v1/x"


def test_access_log_is_json_with_request_id(
    settings: FakeSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_service_app(settings, title="fake", bootstrap=fake_bootstrap([]))
    with TestClient(app) as client:
        client.get("/nope", headers={"X-Request-Id": "req-log"})
    for handler in logging.getLogger().handlers:  # lines are buffered up to 0.5 s
        handler.flush()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    access = [line for line in lines if line["logger"] == "tenx.access"]
    assert access
    assert access[-1]["request_id"] == "req-log"
    assert access[-1]["status"] == 404


def split_bodies(app: ASGIApp, at: int) -> ASGIApp:
    """The app, receiving each request body as two chunks split at ``at``
    (as a client or proxy may send it)."""

    async def splitting(scope: Scope, receive: Receive, send: Send) -> None:
        pending: list[Message] = []

        async def receive_split() -> Message:
            if pending:
                return pending.pop()
            message = await receive()
            body = message.get("body", b"")
            if message["type"] != "http.request" or len(body) <= at:
                return message
            pending.append({**message, "body": body[at:]})
            return {"type": "http.request", "body": body[:at], "more_body": True}

        await app(scope, receive_split, send)

    return splitting


def test_a_nul_escape_split_across_body_chunks_is_refused(settings: FakeSettings) -> None:
    router = APIRouter()
    reached: list[object] = []

    @router.post("/notes")
    async def note(body: dict[str, str]) -> dict[str, str]:
        reached.append(body)
        return body

    app = create_service_app(settings, title="fake", bootstrap=fake_bootstrap([]), routers=[router])
    body = b'{"text": "a\\u0000b"}'
    with TestClient(split_bodies(app, at=body.index(b"u00") + 2)) as client:
        split = client.post("/notes", content=body, headers={"content-type": "application/json"})
        clean = client.post("/notes", json={"text": "a plain note, long enough to split"})
    assert split.status_code == 422
    assert split.json()["code"] == "nul_character"
    assert clean.status_code == 200
    assert reached == [{"text": "a plain note, long enough to split"}]
