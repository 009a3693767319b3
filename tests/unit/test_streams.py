"""A streamed answer (SSE) whose start meets a dependency that is down is a 503
problem, not a broken 200; an outage once it runs ends it cleanly."""

from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from tenx_common.runtime.app import create_service_app
from tenx_common.web.streams import open_stream
from tests.unit.conftest import FakeSettings, fake_bootstrap


async def down_at_start() -> AsyncIterator[str]:
    raise RedisConnectionError("Connection refused")
    yield "never"


async def down_later() -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    yield "id: 1\nevent: notification\ndata: {}\n\n"
    raise RedisConnectionError("Connection reset by peer")


def _app(settings: FakeSettings) -> FastAPI:
    router = APIRouter()

    @router.get("/down-at-start")
    async def starting() -> StreamingResponse:
        return StreamingResponse(await open_stream(down_at_start()), media_type="text/event-stream")

    @router.get("/down-later")
    async def running() -> StreamingResponse:
        return StreamingResponse(await open_stream(down_later()), media_type="text/event-stream")

    return create_service_app(
        settings, title="fake", bootstrap=fake_bootstrap([]), routers=[router]
    )


def test_a_stream_that_cannot_start_is_a_503_problem(settings: FakeSettings) -> None:
    with TestClient(_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/down-at-start")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "redis_unavailable"


def test_an_outage_in_a_running_stream_ends_it_cleanly(settings: FakeSettings) -> None:
    with TestClient(_app(settings)) as client:  # raises if the app raised
        response = client.get("/down-later")
    assert response.status_code == 200
    assert response.text == "retry: 2000\n\nid: 1\nevent: notification\ndata: {}\n\n"
