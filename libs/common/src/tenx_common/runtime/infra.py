"""Opens the clients a service's settings call for, with their readiness checks.

What a service uses is read from the settings mixins it is built of: a
``PostgresSettings`` gets engines and a postgres check, a ``RedisSettings`` a
Redis client, both together a session router (reads to the replicas with
read-your-writes), and so on. Everything opened is closed on the way out.

A bootstrap takes what it needs through the typed accessors (``infra.engines``,
``infra.redis``...): one its service's settings do not call for raises
``NotConfiguredError`` naming the settings it lacks, at startup.
"""

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import httpx
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from sqlalchemy import Table

from tenx_common.data.cache import create_redis, redis_check
from tenx_common.data.db import Engines, create_engines, postgres_check
from tenx_common.data.session_router import RedisWritePositions, SessionRouter
from tenx_common.data.uow import UnitOfWork
from tenx_common.messaging.kafka import kafka_check
from tenx_common.observability.telemetry import traced_http_client
from tenx_common.runtime.mail import smtp_check
from tenx_common.security.tokens import Denylist, Jwks, JwksCache, TokenVerifier
from tenx_common.settings import (
    ElasticsearchSettings,
    JwksSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
    ServiceSettings,
    SmtpSettings,
)
from tenx_common.web.health import Check
from tenx_common.web.problems import ProblemError

if TYPE_CHECKING:  # imported where a service's settings call for it: 25 MB a process
    from elasticsearch import AsyncElasticsearch

D = TypeVar("D")
T = TypeVar("T")


class NotConfiguredError(RuntimeError):
    """A bootstrap asked for a client its service's settings do not call for."""


@dataclass
class Infra:
    service: str
    checks: list[Check] = field(default_factory=list)
    collectors: list[Collector] = field(default_factory=list)
    # Set by open_infra when the settings call for them; read through the accessors.
    _engines: Engines | None = None
    _redis: Redis | None = None
    _elasticsearch: "AsyncElasticsearch | None" = None
    _verifier: TokenVerifier | None = None
    _router: SessionRouter | None = None

    @property
    def engines(self) -> Engines:
        return self._required(self._engines, "database engines", "PostgresSettings (database_url)")

    @property
    def redis(self) -> Redis:
        return self._required(self._redis, "Redis client", "RedisSettings (redis_url)")

    @property
    def router(self) -> SessionRouter:
        return self._required(
            self._router, "session router", "PostgresSettings and RedisSettings (both)"
        )

    @property
    def elasticsearch(self) -> "AsyncElasticsearch":
        return self._required(
            self._elasticsearch, "Elasticsearch client", "ElasticsearchSettings (elasticsearch_url)"
        )

    @property
    def verifier(self) -> TokenVerifier:
        return self._required(self._verifier, "token verifier", "JwksSettings (jwks_url)")

    def unit_of_work(self, *, outbox: Table, source: str) -> Callable[[], UnitOfWork]:
        """The handlers' unit-of-work factory, on the primary's sessions (the
        session router's writer's), staging events in ``outbox`` from ``source``."""
        return functools.partial(UnitOfWork, self.engines.sessions, outbox=outbox, source=source)

    def _required(self, value: T | None, what: str, settings: str) -> T:
        if value is None:
            raise NotConfiguredError(
                f"{self.service} has no {what}: its settings class does not include {settings}"
            )
        return value


@asynccontextmanager
async def open_infra(settings: ServiceSettings) -> AsyncIterator[Infra]:
    infra = Infra(service=settings.service_name)
    async with AsyncExitStack() as stack:
        if isinstance(settings, PostgresSettings):
            infra._engines = create_engines(settings)
            stack.push_async_callback(infra._engines.dispose)
            infra.collectors.append(infra._engines)
            infra.checks.append(postgres_check(infra._engines.primary))
        if isinstance(settings, RedisSettings):
            infra._redis = create_redis(settings)
            stack.push_async_callback(infra._redis.aclose)
            infra.checks.append(redis_check(infra._redis))
        if infra._engines is not None and infra._redis is not None:
            infra._router = SessionRouter(
                engines=infra._engines, positions=RedisWritePositions(infra._redis)
            )
            await infra._router.start()
            stack.push_async_callback(infra._router.stop)
            infra.collectors.append(infra._router)
        if isinstance(settings, KafkaSettings):
            infra.checks.append(kafka_check(settings))
        if isinstance(settings, ElasticsearchSettings):
            from tenx_common.data.elasticsearch import create_elasticsearch, elasticsearch_check

            infra._elasticsearch = create_elasticsearch(settings)
            stack.push_async_callback(infra._elasticsearch.close)
            infra.checks.append(elasticsearch_check(infra._elasticsearch))
        if isinstance(settings, SmtpSettings):
            infra.checks.append(smtp_check(settings))
        if isinstance(settings, JwksSettings):
            http = traced_http_client(timeout=3)
            stack.push_async_callback(http.aclose)
            infra._verifier = jwks_verifier(settings, http=http, redis=infra._redis)
        yield infra


def jwks_verifier(
    settings: JwksSettings, *, http: httpx.AsyncClient, redis: Redis | None
) -> TokenVerifier:
    """A verifier whose keys come from the auth service's JWKS over HTTP."""

    async def fetch() -> Jwks:
        response = await http.get(settings.jwks_url)
        response.raise_for_status()
        jwks: Jwks = response.json()
        return jwks

    return TokenVerifier(
        keys=JwksCache(
            fetch=fetch,
            ttl_s=settings.jwks_cache_ttl_s,
            min_refetch_interval_s=settings.jwks_min_refetch_interval_s,
        ),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        denylist=Denylist(redis) if redis is not None else None,
        leeway_s=settings.jwt_leeway_s,
    )


@dataclass
class ServiceWiring(Generic[D]):
    """A service's wiring, what its bootstrap yields: its infrastructure and its
    handlers' dependencies. The verifier is the infrastructure's unless one is given."""

    infra: Infra
    deps: D
    verifier: TokenVerifier | None = None
    # Answered before a request takes a place (``web.admission``), by method
    # and path ("POST /v1/orders"): a refusal that needs nothing of the
    # request waits for nothing.
    refusals: dict[str, Callable[[], ProblemError | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verifier is None:
            self.verifier = self.infra._verifier

    @property
    def checks(self) -> list[Check]:
        return self.infra.checks

    @property
    def collectors(self) -> list[Collector]:
        return self.infra.collectors

    @property
    def redis(self) -> Redis | None:
        """None without Redis: the rate-limit middleware then lets every request by."""
        return self.infra._redis
