"""OpenTelemetry tracing, set up by one call per service and exported over OTLP."""

import socket

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tenx_common.settings import ServiceSettings

UNTRACED_PATHS = "healthz,readyz,metrics"


def create_tracer_provider(
    settings: ServiceSettings, *, exporter: SpanExporter | None = None
) -> TracerProvider:
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
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """One server span per request, as the outermost middleware.

    The plain ASGI middleware, not FastAPIInstrumentor: that one finds each
    request's route by trying every route again (a third of a cached read's
    time here). The span starts named by the method; ``name_server_span``
    renames it with the route template once routing has matched. The
    per-message send/receive spans cost more than they tell.
    """
    app.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=provider,
        excluded_urls=UNTRACED_PATHS,
        exclude_spans=["receive", "send"],
        default_span_details=lambda scope: (scope.get("method", "HTTP"), {}),
    )


def name_server_span(method: str, route: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
