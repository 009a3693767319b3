"""Typed settings: one BaseSettings per service, built from the pieces here.

Each service composes ``ServiceSettings`` with the dependency mixins it uses and
sets its own env prefix (``TENX_API_``, ``TENX_AUTH_``...). Secrets are
``SecretStr`` fields; outside local mode a service refuses to start while any of
them is empty or still at its default.
"""

from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

Environment = Literal["local", "test", "staging", "production"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str
    service_version: str = "0.1.0"
    environment: Environment = "local"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    otlp_endpoint: str = "http://127.0.0.1:4318"
    tracing_enabled: bool = True
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    # The span export queue: spans wait here for the exporter; a full queue
    # drops spans (counted in tenx_spans_dropped_total). Sized so that no span
    # is dropped at benchmark load (bench/tracing.py).
    span_queue_size: int = Field(default=16384, ge=512, le=1_000_000)
    span_batch_size: int = Field(default=2048, ge=64, le=100_000)
    span_schedule_delay_ms: int = Field(default=500, ge=10, le=60_000)
    readiness_timeout_s: float = Field(default=2.0, gt=0)
    # The proxies whose X-Forwarded-For is believed (the client address that
    # rate limits and logs see): the local edge; in a cluster, the ingress
    # controller (its pods' addresses, or "*" where a NetworkPolicy lets
    # nothing else reach the service).
    forwarded_allow_ips: str = "127.0.0.1"
    # Requests served at once (``tenx_common.web.admission``); 0: as many as
    # the primary's pool has connections (services with PostgreSQL), else no
    # limit. A request waits for its turn up to admission_burst_wait_s while a
    # burst is absorbed, a few milliseconds once the queue stands: then 503.
    # A write whose turn would come later than admission_max_wait_s (the work
    # queued ahead of it, at the service times seen lately) is refused at once.
    max_concurrent_requests: int = Field(default=0, ge=0)
    admission_burst_wait_s: float = Field(default=5.0, gt=0)
    admission_max_wait_s: float = Field(default=0.25, gt=0)

    @property
    def is_local(self) -> bool:
        return self.environment in ("local", "test")

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Self:
        if self.is_local:
            return self
        weak = [
            name
            for name, field in type(self).model_fields.items()
            if isinstance(value := getattr(self, name), SecretStr)
            and _is_default_secret(value, field.default)
        ]
        if weak:
            raise ValueError(
                f"environment={self.environment!r} refuses default or empty secrets: "
                + ", ".join(sorted(weak))
            )
        return self


def _is_default_secret(value: SecretStr, default: Any) -> bool:
    plain = value.get_secret_value()
    return not plain or (isinstance(default, SecretStr) and plain == default.get_secret_value())


class PostgresSettings(BaseSettings):
    database_url: str = "postgresql+asyncpg://tenx@127.0.0.1:5432/tenx"
    # Connections that keep their session, which a pooler in transaction mode
    # does not give (LISTEN: the relays' and loops' wake-ups), and migrations:
    # PgBouncer's session-mode pool, or the database itself. Empty: database_url.
    database_session_url: str = ""
    # asyncpg's prepared statements per connection. 0 behind PgBouncer in
    # transaction mode (1.18 keeps no prepared statement across transactions):
    # statements are then unnamed and parsed at each execution, in the same
    # round trip (``db.bounded_waits``).
    database_statement_cache_size: int = Field(default=100, ge=0)
    database_password: SecretStr = SecretStr("")
    replica_urls: list[str] = Field(default_factory=list)
    # How long a request waits for a database it cannot reach before it is
    # answered 503 database_unavailable: asyncpg's connect (TCP, TLS, sign-in;
    # its own default is 60 s). A database that is down fails there, so the
    # pool never fills with it. The pool's checkout wait, for a pool whose
    # connections are all busy with a live database, is an overload bound and
    # stays SQLAlchemy's 30 s: at 5 s, a burst of 200 orders at one product
    # answered some of them 503 instead of queueing. No statement timeout.
    database_connect_timeout_s: float = Field(default=3.0, gt=0)
    database_pool_timeout_s: float = Field(default=30.0, gt=0)
    # Connections each pool keeps, and how many more it may open under load;
    # the primary's pool also bounds the requests a process admits at once
    # (``max_concurrent_requests``).
    database_pool_size: int = Field(default=5, ge=1)
    database_pool_overflow: int = Field(default=5, ge=0)

    def primary_url(self) -> URL:
        return self._with_password(self.database_url)

    def session_url(self) -> URL:
        return self._with_password(self.database_session_url or self.database_url)

    def replica_url_list(self) -> list[URL]:
        return [self._with_password(url) for url in self.replica_urls]

    def _with_password(self, url: str) -> URL:
        return make_url(url).set(password=self.database_password.get_secret_value() or None)


class RedisSettings(BaseSettings):
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr = SecretStr("")
    redis_max_connections: int = Field(default=64, ge=1)
    # The waits before a request is answered 503 redis_unavailable: connecting,
    # each command's reply (pub/sub's blocking reads are exempt), and a free
    # connection from a pool at redis_max_connections.
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    redis_pool_timeout_s: float = Field(default=5.0, gt=0)


class KafkaSettings(BaseSettings):
    kafka_bootstrap_servers: str = "127.0.0.1:9092"


class RelaySettings(BaseSettings):
    """The outbox relay (``python -m tenx_<svc> relay``)."""

    outbox_batch_size: int = Field(default=200, ge=1, le=5000)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_retention_s: float = Field(default=24 * 3600, ge=60)
    # The service's worker also runs its relay (one process fewer per service:
    # the local stack). Deployed, relays run on their own and scale apart.
    relay_in_worker: bool = False


class ElasticsearchSettings(BaseSettings):
    elasticsearch_url: str = "http://127.0.0.1:9200"
    # A whole request, connecting included (searches and the indexer's bulk
    # writes alike); a timed-out request is not retried.
    elasticsearch_request_timeout_s: float = Field(default=5.0, gt=0)


class SmtpSettings(BaseSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025


class TokenSettings(BaseSettings):
    """What every service checks in an access token."""

    jwt_issuer: str = "tenx-auth"
    jwt_audience: str = "tenx"
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)


class JwksSettings(TokenSettings):
    """Services that verify tokens against the auth service's published keys."""

    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwks_cache_ttl_s: float = Field(default=300.0, gt=0)
    jwks_min_refetch_interval_s: float = Field(default=10.0, ge=0)


class RateLimitSettings(BaseSettings):
    """Request rates per user and per client address, by route class (reads are
    GET, HEAD and OPTIONS; writes are the rest). A bucket holds ``burst_seconds``
    worth of its rate."""

    rate_limit_enabled: bool = True
    rate_limit_user_read_per_minute: int = Field(default=600, ge=1)
    rate_limit_user_write_per_minute: int = Field(default=120, ge=1)
    rate_limit_ip_read_per_minute: int = Field(default=1200, ge=1)
    rate_limit_ip_write_per_minute: int = Field(default=240, ge=1)
    rate_limit_burst_seconds: int = Field(default=10, ge=1, le=60)


class ConsumerSettings(BaseSettings):
    """The service's consumers (``python -m tenx_<svc> worker``)."""

    consumer_max_attempts: int = Field(default=5, ge=1, le=20)
    consumer_backoff_s: float = Field(default=0.2, ge=0)
    consumer_backoff_max_s: float = Field(default=5.0, ge=0)
    consumer_batch_size: int = Field(default=200, ge=1, le=5000)
    inbox_retention_s: float = Field(default=7 * 24 * 3600, ge=60)
