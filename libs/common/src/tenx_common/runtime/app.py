"""The shared service defaults: every service's app is built here in one call.

A service passes its settings, its bootstrap (an async context manager that
builds its clients and readiness checks, and closes them on the way out) and
its routers. Nothing connects before the lifespan runs the bootstrap.

``create_service_app`` wires, in this order: JSON logging, the tracer
provider, the problem+json handlers, the OpenAPI completions, the service's
routes, ``/healthz``, ``/readyz`` and ``/metrics``, the rate limiter (services
with ``RateLimitSettings``), admission (``web.admission``: refused before the
rate limiter spends a Redis call), and, outermost, the request-context middleware
(request id, the server span, RED metrics, the access log). Serving is
``tenx_common.runtime.server`` (uvicorn on uvloop and httptools).
"""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Request
from prometheus_client.registry import Collector

from tenx_common.observability.logging import configure_logging
from tenx_common.observability.metrics import Metrics, metrics_router
from tenx_common.observability.telemetry import setup_telemetry
from tenx_common.runtime.openapi import install_openapi
from tenx_common.security.throttle import RateLimitMiddleware
from tenx_common.settings import PostgresSettings, RateLimitSettings, ServiceSettings
from tenx_common.web.admission import Admission, AdmissionMiddleware
from tenx_common.web.health import Check, health_router
from tenx_common.web.middleware import RequestContextMiddleware
from tenx_common.web.problems import install_problem_handlers


class Bootstrapped(Protocol):
    """What a bootstrap yields: the readiness checks of the service, and the
    Prometheus collectors of its clients."""

    @property
    def checks(self) -> Sequence[Check]: ...

    @property
    def collectors(self) -> Sequence[Collector]: ...


S = TypeVar("S", bound=ServiceSettings)


async def handler_deps(request: Request) -> Any:
    """The handlers' dependencies the bootstrap built, for ``Depends``. (Async:
    FastAPI would run a plain function in a worker thread on every request.)"""
    return request.app.state.wiring.deps


def admission_limit(settings: ServiceSettings) -> int:
    """Requests served at once; 0 for no limit."""
    if settings.max_concurrent_requests:
        return settings.max_concurrent_requests
    if isinstance(settings, PostgresSettings):
        return settings.database_pool_size + settings.database_pool_overflow
    return 0


def create_service_app(
    settings: S,
    *,
    title: str,
    bootstrap: Callable[[S], AbstractAsyncContextManager[Bootstrapped]],
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    configure_logging(service=settings.service_name, level=settings.log_level)
    telemetry = setup_telemetry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bootstrap(settings) as wiring:
            app.state.wiring = wiring
            app.state.checks = wiring.checks
            registry = app.state.metrics.registry
            for collector in wiring.collectors:
                registry.register(collector)
            yield
            for collector in wiring.collectors:
                registry.unregister(collector)
        telemetry.flush()

    # FastAPI's own telemetry is off: the request middleware makes the server
    # span (one per request, cheaper), and the metrics are Prometheus'.
    app = FastAPI(
        title=title,
        version=settings.service_version,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.metrics = Metrics(service=settings.service_name)
    app.state.metrics.registry.register(telemetry)
    app.state.telemetry = telemetry
    install_problem_handlers(app)
    install_openapi(app)
    # The routers' routes go straight onto the app (each router carries its own
    # prefix): include_router would nest them, and every request would then be
    # matched through the nesting, which costs as much as the handler itself.
    for router in (*routers, health_router(), metrics_router()):  # matched in this order
        app.router.routes.extend(router.routes)
    if isinstance(settings, RateLimitSettings):
        app.add_middleware(RateLimitMiddleware, settings=settings)
    if limit := admission_limit(settings):
        app.state.admission = Admission(
            limit,
            burst_wait_s=settings.admission_burst_wait_s,
            max_wait_s=settings.admission_max_wait_s,
        )
        app.add_middleware(
            AdmissionMiddleware, admission=app.state.admission, metrics=app.state.metrics
        )
    tracer = telemetry.tracer("tenx.http") if settings.tracing_enabled else None
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics, tracer=tracer)
    return app
