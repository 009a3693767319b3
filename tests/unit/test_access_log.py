"""Access-log lines: the same JSON as every other line, one per request."""

import io
import json
import logging
import re

import pytest

from tenx_common.observability.logging import configure_logging, log_access, request_id_var


def test_an_access_line_is_the_json_every_line_is(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    configure_logging(service="svc", level="INFO")
    token = request_id_var.set("req-1")
    try:
        log_access("GET /v1/things/1 200", {"route": "/v1/things/{id}", "status": 200})
        logging.getLogger("other").info("plain %s", "line")
    finally:
        request_id_var.reset(token)
    for handler in logging.getLogger().handlers:
        handler.flush()
    access, plain = (json.loads(line) for line in out.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", access["ts"])
    assert access["logger"] == "tenx.access"
    assert access["service"] == "svc"
    assert access["request_id"] == "req-1"
    assert access["route"] == "/v1/things/{id}"
    assert access["msg"] == "GET /v1/things/1 200"
    assert set(plain) >= {"ts", "level", "service", "logger", "msg", "request_id"}
    assert plain["msg"] == "plain line"


def test_no_access_line_below_its_level(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    configure_logging(service="svc", level="WARNING")
    log_access("GET / 200", {})
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert out.getvalue() == ""
