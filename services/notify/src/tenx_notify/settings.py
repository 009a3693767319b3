"""Settings of the notify service, read from ``TENX_NOTIFY_*`` variables."""

from pydantic_settings import SettingsConfigDict

from tenx_common.settings import (
    JwksSettings,
    KafkaSettings,
    PostgresSettings,
    RateLimitSettings,
    RedisSettings,
    ServiceSettings,
    SmtpSettings,
)


class Settings(
    RateLimitSettings,
    JwksSettings,
    PostgresSettings,
    RedisSettings,
    KafkaSettings,
    SmtpSettings,
    ServiceSettings,
):
    model_config = SettingsConfigDict(env_prefix="TENX_NOTIFY_", extra="ignore", frozen=True)

    service_name: str = "notify"
    port: int = 8002
    database_url: str = "postgresql+asyncpg://tenx_notify@127.0.0.1:5432/tenx_notify"
