"""Settings of the api service, read from ``TENX_API_*`` variables."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tenx_common.settings import (
    ConsumerSettings,
    ElasticsearchSettings,
    JwksSettings,
    KafkaSettings,
    PostgresSettings,
    RateLimitSettings,
    RedisSettings,
    RelaySettings,
    ServiceSettings,
)


class Settings(
    RateLimitSettings,
    JwksSettings,
    PostgresSettings,
    RedisSettings,
    KafkaSettings,
    RelaySettings,
    ConsumerSettings,
    ElasticsearchSettings,
    ServiceSettings,
):
    model_config = SettingsConfigDict(env_prefix="TENX_API_", extra="ignore", frozen=True)

    service_name: str = "api"
    port: int = 8000
    database_url: str = "postgresql+asyncpg://tenx_api@127.0.0.1:5432/tenx_api"

    product_cache_ttl_s: int = Field(default=300, ge=1)
    # Anonymous product reads may be served from this process's copy, which a
    # change drops through Redis pub/sub at once, and which lives at most this long.
    near_cache_ttl_s: float = Field(default=5.0, gt=0, le=60)
    profile_cache_ttl_s: int = Field(default=300, ge=1)
    # Idempotency keys are kept at least this long, then swept (hourly).
    idempotency_key_ttl_s: int = Field(default=24 * 3600, ge=24 * 3600)
    idempotency_sweep_interval_s: float = Field(default=3600.0, gt=0)
    # The order saga: one payment authorization may take this long; a timeout
    # or an error is retried (with backoff) up to the attempts, then compensated.
    payment_timeout_s: float = Field(default=2.0, gt=0, le=60)
    payment_max_attempts: int = Field(default=3, ge=1, le=10)
    payment_retry_backoff_s: float = Field(default=0.5, ge=0)
    saga_poll_interval_s: float = Field(default=1.0, gt=0)
    # New orders are refused (503 overloaded) while the oldest due saga step
    # has waited longer than this for a runner (service_layer/backlog.py);
    # each api instance measures it every saga_backlog_poll_s.
    saga_backlog_max_age_s: float = Field(default=10.0, gt=0)
    saga_backlog_poll_s: float = Field(default=1.0, gt=0)
    # StockChanged goes out once per product per window for all its stock
    # changes (service_layer/stock_announcements.py); a fallback poll without NOTIFY.
    stock_announce_window_s: float = Field(default=0.25, ge=0)
    stock_announce_poll_s: float = Field(default=5.0, gt=0)
