"""Every error leaves a service as RFC 9457 problem+json, with the request id."""

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from tenx_common.app import create_service_app
from tenx_common.problems import ProblemError
from tests.unit.conftest import FakeSettings, fake_bootstrap


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
