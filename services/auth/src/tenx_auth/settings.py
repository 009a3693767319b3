"""Settings of the auth service, read from ``TENX_AUTH_*`` variables."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tenx_common.settings import (
    ConsumerSettings,
    KafkaSettings,
    PostgresSettings,
    RateLimitSettings,
    RedisSettings,
    RelaySettings,
    ServiceSettings,
    TokenSettings,
)


class Settings(
    RateLimitSettings,
    PostgresSettings,
    RedisSettings,
    KafkaSettings,
    RelaySettings,
    ConsumerSettings,
    TokenSettings,
    ServiceSettings,
):
    model_config = SettingsConfigDict(env_prefix="TENX_AUTH_", extra="ignore", frozen=True)

    service_name: str = "auth"
    port: int = 8001
    database_url: str = "postgresql+asyncpg://tenx_auth@127.0.0.1:5432/tenx_auth"

    # Encrypts the signing keys at rest (a Fernet key). Required: the local
    # stack generates one at first start.
    key_encryption_key: SecretStr = SecretStr("")
    # A bootstrap admin account: when a password is set, the account is
    # created at startup (its password follows the setting), in any
    # environment. Unset, there is none (and nothing to refuse).
    admin_email: str = "admin@tenx.local"
    admin_password: SecretStr | None = None

    access_token_ttl_s: int = Field(default=900, ge=60, le=3600)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)
    verification_token_ttl_s: int = Field(default=48 * 3600, ge=600)
    reset_token_ttl_s: int = Field(default=3600, ge=300)
    signing_key_cache_s: float = Field(default=30.0, ge=0, le=60)
    # A new key signs only after this delay, so verifiers that rate-limit
    # their JWKS refetches (10 s by default) have seen it first.
    key_activation_delay_s: float = Field(default=15.0, ge=0)

    # Brute-force limits on POST /v1/auth/token: failed attempts per window.
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_ip: int = Field(default=50, ge=1)
    login_window_s: int = Field(default=900, ge=1)
    # The account-deletion saga: the services that must reply AccountDataErased
    # before the credentials go, and how long a reply may take before the
    # request is published again (then twice as long each time, up to an hour).
    deletion_participants: list[str] = Field(
        default_factory=lambda: ["api", "notify", "search-indexer"], min_length=1
    )
    deletion_rerequest_after_s: float = Field(default=30.0, gt=0)
