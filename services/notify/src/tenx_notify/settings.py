"""Settings of the notify service, read from ``TENX_NOTIFY_*`` variables."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tenx_common.settings import (
    ConsumerSettings,
    JwksSettings,
    KafkaSettings,
    PostgresSettings,
    RateLimitSettings,
    RedisSettings,
    RelaySettings,
    ServiceSettings,
    SmtpSettings,
)


class Settings(
    RateLimitSettings,
    JwksSettings,
    PostgresSettings,
    RedisSettings,
    KafkaSettings,
    RelaySettings,
    ConsumerSettings,
    SmtpSettings,
    ServiceSettings,
):
    model_config = SettingsConfigDict(env_prefix="TENX_NOTIFY_", extra="ignore", frozen=True)

    service_name: str = "notify"
    port: int = 8002
    database_url: str = "postgresql+asyncpg://tenx_notify@127.0.0.1:5432/tenx_notify"
    # Encrypts the webhooks' signing secrets at rest (a Fernet key). Required:
    # the local stack generates one at first start.
    secret_encryption_key: SecretStr = SecretStr("")
    # Emails: the sender, and the public base URL their links point at.
    mail_from: str = "Tenx <no-reply@tenx.local>"
    public_base_url: str = "http://127.0.0.1:8080"
    # Deliveries (email): one attempt may take this long; a failure is retried
    # with exponential backoff and jitter, up to the attempts, then dead.
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=120)
    delivery_max_attempts: int = Field(default=6, ge=1, le=20)
    delivery_backoff_s: float = Field(default=1.0, ge=0)
    delivery_backoff_max_s: float = Field(default=300.0, ge=0)
    delivery_poll_interval_s: float = Field(default=1.0, gt=0)
    # The live feed: a comment line this often keeps idle streams open.
    sse_heartbeat_s: float = Field(default=15.0, gt=0, le=300)
