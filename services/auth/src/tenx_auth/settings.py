"""Settings of the auth service, read from ``TENX_AUTH_*`` variables."""

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from tenx_common.settings import KafkaSettings, PostgresSettings, RedisSettings, ServiceSettings


class Settings(PostgresSettings, RedisSettings, KafkaSettings, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TENX_AUTH_", extra="ignore", frozen=True)

    service_name: str = "auth"
    port: int = 8001
    database_url: str = "postgresql+asyncpg://tenx_auth@127.0.0.1:5432/tenx_auth"
    admin_email: str = "admin@tenx.local"
    admin_password: SecretStr = SecretStr("")
