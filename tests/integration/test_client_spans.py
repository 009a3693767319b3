"""Each instrumented client, against the real server, makes its span with the
attributes the platform promises, as a child of the current span; and a Kafka
consumer's span is a child of the producer's (the context crosses in headers,
record by record, not lost inside the consuming loop)."""

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.cache import create_redis
from tenx_common.data.db import create_engines
from tenx_common.data.elasticsearch import create_elasticsearch
from tenx_common.events import cloud_event
from tenx_common.events.catalog_products import ProductUpdated
from tenx_common.messaging.records import Record, process_span_options, read_envelope
from tenx_common.messaging.topics import TopicSettings, ensure_topics
from tenx_common.observability.telemetry import traced_http_client


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # nothing set one up in this process yet
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


def under_test() -> Any:
    return trace.get_tracer("tests").start_as_current_span("test")


def children(exporter: InMemorySpanExporter, name: str | None = None) -> list[ReadableSpan]:
    found = exporter.get_finished_spans()
    [parent] = [s for s in found if s.name == "test"]
    kids = [s for s in found if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return [s for s in kids if name is None or s.name == name]


async def test_sql_statements_are_client_spans(
    spans: InMemorySpanExporter, api_settings: ApiSettings
) -> None:
    engines = create_engines(api_settings)
    try:
        with under_test():
            async with engines.primary.connect() as conn:
                await conn.execute(text("SELECT 1"))
        # Outside a recorded span, nothing is made.
        async with engines.primary.connect() as conn:
            await conn.execute(text("SELECT 2"))
    finally:
        await engines.dispose()
    [span] = children(spans, "SELECT tenx_api")
    assert span.kind == SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["db.system.name"] == "postgresql"
    assert attributes["db.namespace"] == "tenx_api"
    assert attributes["db.operation.name"] == "SELECT"
    assert attributes["db.query.text"] == "SELECT 1"
    # The server the engine talks to: PgBouncer locally, as configured.
    assert attributes["server.port"] == api_settings.primary_url().port
    assert not [s for s in spans.get_finished_spans() if "SELECT 2" in str(s.attributes)]


async def test_redis_commands_and_pipelines_are_client_spans(
    spans: InMemorySpanExporter, api_settings: ApiSettings
) -> None:
    redis = create_redis(api_settings)
    key = f"test:span:{uuid.uuid4().hex}"
    try:
        with under_test():
            await redis.set(key, "secret-value", ex=10)
            async with redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.delete(key)
                await pipe.execute()
    finally:
        await redis.aclose()
    [command] = children(spans, "SET")
    attributes = dict(command.attributes or {})
    assert (attributes["db.system.name"], attributes["db.operation.name"]) == ("redis", "SET")
    assert attributes["server.port"] == 6379
    assert "secret-value" not in json.dumps(attributes)  # names, never arguments
    [pipeline] = children(spans, "PIPELINE")
    assert dict(pipeline.attributes or {})["db.query.text"] == "GET DEL"


async def test_http_requests_are_client_spans_that_send_the_trace(
    spans: InMemorySpanExporter,
) -> None:
    async with traced_http_client(timeout=10) as client:
        with under_test():
            response = await client.get("http://127.0.0.1:8001/.well-known/jwks.json?x=1")
    assert response.status_code == 200
    [span] = children(spans, "GET")
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.full"] == "http://127.0.0.1:8001/.well-known/jwks.json"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.port"] == 8001
    assert response.request.headers["traceparent"].split("-")[2] == format(
        span.context.span_id, "016x"
    )


async def test_elasticsearch_calls_are_spans(
    spans: InMemorySpanExporter, api_settings: ApiSettings
) -> None:
    es = create_elasticsearch(api_settings)
    try:
        with under_test():
            await es.search(index="products", size=0)
    finally:
        await es.close()
    [span] = children(spans, "search")
    attributes = dict(span.attributes or {})
    assert attributes["db.system"] == "elasticsearch"
    assert attributes["db.operation"] == "search"
    assert attributes["http.request.method"] == "POST"


@pytest.fixture
async def topic(api_settings: ApiSettings) -> AsyncIterator[str]:
    name = f"test.spans-{uuid.uuid4().hex[:8]}"
    await ensure_topics(TopicSettings(), names=(name,))
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=api_settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_a_consumed_records_span_is_a_child_of_its_producers(
    spans: InMemorySpanExporter, api_settings: ApiSettings, topic: str
) -> None:
    # Three records from three producer spans, consumed in one `async for`:
    # each record's processing span has its own producer's span as parent.
    producer = AIOKafkaProducer(bootstrap_servers=api_settings.kafka_bootstrap_servers)
    await producer.start()
    tracer = trace.get_tracer("tests")
    sent: list[int] = []
    try:
        for n in range(3):
            with tracer.start_as_current_span(f"produce {n}", kind=SpanKind.PRODUCER) as span:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                event = ProductUpdated(
                    product_id=uuid.uuid4(),
                    version=n + 1,
                    sku="S",
                    name="n",
                    description="",
                    category="c",
                    price_cents=1,
                    currency="EUR",
                    stock=1,
                )
                await producer.send_and_wait(
                    topic,
                    json.dumps(cloud_event(event, source="/tests")).encode(),
                    headers=[(k, v.encode()) for k, v in carrier.items()],
                )
                sent.append(span.get_span_context().span_id)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=api_settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen: list[tuple[int, int]] = []
    try:
        async for raw in consumer:
            record = Record(
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                key=None,
                value=raw.value or b"",
                headers={k: v.decode() for k, v in raw.headers or ()},
            )
            envelope = read_envelope(record)
            options = process_span_options("test-consumer", record, envelope)
            with tracer.start_as_current_span(**options) as span:
                parent = getattr(span, "parent", None)  # an SDK span
                assert parent is not None
                seen.append((parent.span_id, span.get_span_context().trace_id))
            if len(seen) == 3:
                break
    finally:
        await consumer.stop()
    assert sorted(parent for parent, _ in seen) == sorted(sent)
    processed = [s for s in spans.get_finished_spans() if s.name == f"{topic} process"]
    assert len(processed) == 3
    assert all(s.kind == SpanKind.CONSUMER for s in processed)
    assert {dict(s.attributes or {})["messaging.destination.name"] for s in processed} == {topic}
