"""Settings of the search-indexer service, read from ``TENX_SEARCH_INDEXER_*`` variables."""

from pydantic_settings import SettingsConfigDict

from tenx_common.settings import (
    ElasticsearchSettings,
    KafkaSettings,
    PostgresSettings,
    ServiceSettings,
)


class Settings(PostgresSettings, KafkaSettings, ElasticsearchSettings, ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="TENX_SEARCH_INDEXER_", extra="ignore", frozen=True
    )

    service_name: str = "search-indexer"
    port: int = 8003
    database_url: str = (
        "postgresql+asyncpg://tenx_search_indexer@127.0.0.1:5432/tenx_search_indexer"
    )
