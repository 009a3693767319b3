"""The request middleware's server span: one per request, a child of the
caller's traceparent, named by the route template, an error on a 5xx."""

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tenx_common.observability.metrics import Metrics
from tenx_common.web.middleware import RequestContextMiddleware

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def app_with(exporter: InMemorySpanExporter) -> FastAPI:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(
        RequestContextMiddleware, metrics=Metrics(service="t"), tracer=provider.get_tracer("t")
    )
    return app


async def test_a_request_is_one_server_span_under_the_callers_trace(
    exporter: InMemorySpanExporter,
) -> None:
    transport = httpx.ASGITransport(app=app_with(exporter))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(
            "/v1/things/42", headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}
        )
        await client.get("/healthz")
    assert response.status_code == 200
    [span] = exporter.get_finished_spans()  # /healthz is not traced
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /v1/things/{thing_id}"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v1/things/{thing_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET


async def test_an_unhandled_error_marks_the_span_and_answers_a_problem(
    exporter: InMemorySpanExporter,
) -> None:
    transport = httpx.ASGITransport(app=app_with(exporter), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
