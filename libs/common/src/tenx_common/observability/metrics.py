"""Prometheus metrics: one registry per app, RED per route, served on /metrics.

Here: ``http_requests_total`` and ``http_request_duration_seconds`` per route
template and status (bounded labels), ``tenx_rate_limited_total{scope,route_class}`` and
``tenx_requests_refused_total{reason}`` and ``tenx_admission_wait_seconds{outcome}``
(``web.admission``).
The rest come from the collectors the bootstrap registers, each beside what
it measures: the pools (``tenx_db_pool_*``, ``data.db``), the session router
(``tenx_db_reads_total``, ``tenx_db_replica_*``), the cache
(``tenx_cache_lookups_total``), the span queue (``tenx_spans_*``,
``observability.telemetry``), and on the workers the outbox
(``tenx_outbox_depth``, ``tenx_outbox_oldest_age_seconds``), the consumer
(``tenx_consumer_*``, ``tenx_dead_letters_parked``), the relay
(``tenx_outbox_published_total``), the saga runner
(``tenx_saga_transitions_total``), notify's deliveries
(``tenx_deliveries_total``) and the indexer
(``tenx_search_index_freshness_seconds``).
"""

from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    service: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter(
            "http_requests", "HTTP requests handled", labels, registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            labels,  # by status too: a refusal's time is not a placement's
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "tenx_rate_limited",
            "Requests refused by a rate limit, by the bucket that refused (ip, user)",
            ("scope", "route_class"),
            registry=self.registry,
        )

        self.refused = Counter(
            "tenx_requests_refused",
            "Requests refused before a handler ran, by reason (overloaded)",
            ("reason",),
            registry=self.registry,
        )
        # How long a request waited for its place before it was admitted or
        # refused: an answer's time is this wait plus its handler's.
        self.admission_wait = Histogram(
            "tenx_admission_wait_seconds",
            "Time a request waited in admission's queue, by outcome (admitted, refused)",
            ("outcome",),
            buckets=(0.001, *LATENCY_BUCKETS),
            registry=self.registry,
        )

    def observe_request(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        registry: Metrics = request.app.state.metrics
        return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)

    return router
