"""OpenTelemetry, set up by one call per service process (``setup_telemetry``),
and the client spans every service shares.

The call builds the tracer provider (resource: service.name, service.version,
service.instance.id, deployment.environment.name; parent-based ratio sampling
from ``trace_sample_ratio``; OTLP/HTTP export to Jaeger through a batch
processor sized by settings), makes it the process's global provider (so the
Elasticsearch client's own spans and our client spans below use it), and
counts the spans the batch queue had to drop (``tenx_spans_dropped_total`` on
/metrics). The sample ratio is 1.0 locally, so that every request can be
inspected, and 0.1 in production (``deploy/k8s/base/config``; the benchmarks
run at it too); a caller's sampled trace is always recorded. Logs carry
trace_id and span_id (``tenx_common.observability.logging``).
Metrics are Prometheus text from ``prometheus_client`` (``tenx_common.observability.metrics``).

Client spans, each made only when the current span is recorded (an unsampled
request costs nothing more):

- SQL: ``trace_engine`` hooks SQLAlchemy's cursor events: one CLIENT span per
  statement (``db.system.name``, ``db.namespace``, ``db.operation.name``,
  ``db.query.text`` up to 1,000 characters, ``server.address``/``port``).
- Redis: ``TracedRedis`` (what ``create_redis`` builds): a span per command,
  and one per pipeline.
- HTTP: ``traced_http_client``: an httpx client whose transport makes a
  CLIENT span per request and sends ``traceparent``.
- Elasticsearch: the official client makes its own spans (``db.system``
  elasticsearch, the endpoint as the name) through the global provider.
- Kafka, the outbox, sagas, deliveries: made where they happen (relay,
  consumer, saga, notify's delivery loop).
"""

import logging
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.settings import ServiceSettings

log = logging.getLogger(__name__)

QUERY_TEXT_LIMIT = 1000


class CountingSpanProcessor(BatchSpanProcessor):
    """The batch processor, counting the spans it drops because its queue is full."""

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int, **kwargs: Any) -> None:
        super().__init__(exporter, max_queue_size=max_queue_size, **kwargs)
        self.max_queue_size = max_queue_size
        self.dropped = 0
        self.ended = 0

    def queued(self) -> int:
        return len(self._batch_processor._queue)  # the SDK's deque (pinned version)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1
        if self.queued() >= self.max_queue_size:
            self.dropped += 1  # the SDK drops the oldest queued span to make room
        super().on_end(span)


@dataclass(eq=False)  # a Prometheus collector: hashed by identity
class Telemetry:
    """A service's tracing: its provider, and the spans its queue dropped."""

    service: str
    provider: TracerProvider
    processor: CountingSpanProcessor | None = None
    tracers: dict[str, Tracer] = field(default_factory=dict)

    def tracer(self, name: str) -> Tracer:
        if name not in self.tracers:
            self.tracers[name] = self.provider.get_tracer(name)
        return self.tracers[name]

    def flush(self) -> None:
        self.provider.force_flush(timeout_millis=5000)

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "tenx_spans_dropped", "Spans dropped because the export queue was full"
        )
        ended = CounterMetricFamily("tenx_spans_ended", "Recorded spans handed to the exporter")
        queued = GaugeMetricFamily("tenx_span_queue_size", "Spans waiting to be exported")
        processor = self.processor
        dropped.add_metric([], processor.dropped if processor else 0)
        ended.add_metric([], processor.ended if processor else 0)
        queued.add_metric([], processor.queued() if processor else 0)
        yield from (dropped, ended, queued)


_services: dict[str, Telemetry] = {}


def setup_telemetry(
    settings: ServiceSettings, *, exporter: SpanExporter | None = None
) -> Telemetry:
    """The service's telemetry, built on its first call in the process (later
    calls for the same service name return it)."""
    found = _services.get(settings.service_name)
    if found is not None and exporter is None:
        return found
    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.version": settings.service_version,
            "service.instance.id": f"{socket.gethostname()}:{settings.port}",
            "deployment.environment.name": settings.environment,
        }
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
    )
    if exporter is None and settings.tracing_enabled:
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces")
    processor = None
    if exporter is not None:
        processor = CountingSpanProcessor(
            exporter,
            max_queue_size=settings.span_queue_size,
            max_export_batch_size=settings.span_batch_size,
            schedule_delay_millis=settings.span_schedule_delay_ms,
        )
        provider.add_span_processor(processor)
    telemetry = Telemetry(service=settings.service_name, provider=provider, processor=processor)
    if not _services:  # the first service of the process is the global provider
        trace.set_tracer_provider(provider)
    _services[settings.service_name] = telemetry
    return telemetry


def create_tracer_provider(
    settings: ServiceSettings, *, exporter: SpanExporter | None = None
) -> TracerProvider:
    return setup_telemetry(settings, exporter=exporter).provider


def _tracer(name: str) -> Tracer:
    return trace.get_tracer(name)  # the global provider's, once it is set


# -- SQL ------------------------------------------------------------------------


def trace_engine(engine: AsyncEngine) -> AsyncEngine:
    """A CLIENT span per statement of ``engine`` (only under a recorded span)."""
    tracer = _tracer("tenx.sql")
    url = engine.url
    base: dict[str, Any] = {
        "db.system.name": "postgresql",
        "db.namespace": url.database or "",
        "server.address": url.host or "",
        "server.port": url.port or 5432,
    }

    def before(_conn: Any, _cursor: Any, statement: str, _p: Any, context: Any, _m: Any) -> None:
        if not trace.get_current_span().is_recording():
            return
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        context._tenx_span = tracer.start_span(
            f"{operation} {base['db.namespace']}",
            kind=SpanKind.CLIENT,
            attributes=base
            | {"db.operation.name": operation, "db.query.text": statement[:QUERY_TEXT_LIMIT]},
        )

    def after(_conn: Any, _cursor: Any, _s: Any, _p: Any, context: Any, _m: Any) -> None:
        span = getattr(context, "_tenx_span", None)
        if span is not None:
            span.end()
            context._tenx_span = None

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, "_tenx_span", None) if context is not None else None
        if span is not None:
            error = exception_context.original_exception
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
            context._tenx_span = None

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", before)
    event.listen(sync, "after_cursor_execute", after)
    event.listen(sync, "handle_error", failed)
    return engine


# -- Redis ----------------------------------------------------------------------


def _redis_attributes(client: Any, operation: str) -> dict[str, Any]:
    kwargs = client.connection_pool.connection_kwargs
    return {
        "db.system.name": "redis",
        "db.operation.name": operation,
        "db.namespace": str(kwargs.get("db", 0)),
        "server.address": str(kwargs.get("host", "")),
        "server.port": int(kwargs.get("port", 6379)),
    }


class TracedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not trace.get_current_span().is_recording():
            return await super().execute(raise_on_error)
        commands = [str(args[0]) for args, _ in self.command_stack]
        attributes = _redis_attributes(self, "PIPELINE") | {
            "db.operation.batch.size": len(commands)
        }
        attributes["db.query.text"] = " ".join(commands)[:QUERY_TEXT_LIMIT]
        with _tracer("tenx.redis").start_as_current_span(
            "PIPELINE", kind=SpanKind.CLIENT, attributes=attributes
        ):
            return await super().execute(raise_on_error)


class TracedRedis(Redis):
    """Redis with a CLIENT span per command (the command's name, never its arguments)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if not trace.get_current_span().is_recording():
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        operation = str(args[0]).upper()
        with _tracer("tenx.redis").start_as_current_span(
            operation, kind=SpanKind.CLIENT, attributes=_redis_attributes(self, operation)
        ):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> TracedPipeline:
        return TracedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


# -- HTTP -----------------------------------------------------------------------


class TracedTransport(httpx.AsyncBaseTransport):
    """A CLIENT span per request, and ``traceparent`` sent along."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not trace.get_current_span().is_recording():
            return await self._inner.handle_async_request(request)
        url = request.url
        with _tracer("tenx.http.client").start_as_current_span(
            request.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "url.full": str(url.copy_with(query=None)),
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
            },
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            request.headers.update(carrier)
            response = await self._inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def traced_http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client whose requests are CLIENT spans (arguments as httpx's)."""
    return httpx.AsyncClient(transport=TracedTransport(), **kwargs)


def current_traceparent() -> Mapping[str, str]:
    """The current trace context as headers (for a row that resumes it later)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
