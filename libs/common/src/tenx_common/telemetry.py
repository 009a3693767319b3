"""OpenTelemetry tracing, set up by one call per service and exported over OTLP."""

import socket

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tenx_common.settings import ServiceSettings


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
