"""Logs, metrics and traces: JSON log lines (``logging``), the Prometheus
registry and RED metrics (``metrics``), OpenTelemetry set-up and the client
spans every service shares (``telemetry``).

Services import from here; the modules import one another directly."""

from tenx_common.observability.telemetry import current_traceparent, traced_http_client

__all__ = ["current_traceparent", "traced_http_client"]
