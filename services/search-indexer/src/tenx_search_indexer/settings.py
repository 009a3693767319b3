"""Settings of the search-indexer service, read from ``TENX_SEARCH_INDEXER_*`` variables."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tenx_common.settings import (
    ConsumerSettings,
    ElasticsearchSettings,
    KafkaSettings,
    PostgresSettings,
    RelaySettings,
    ServiceSettings,
)


class Settings(
    PostgresSettings,
    KafkaSettings,
    RelaySettings,
    ConsumerSettings,
    ElasticsearchSettings,
    ServiceSettings,
):
    model_config = SettingsConfigDict(
        env_prefix="TENX_SEARCH_INDEXER_", extra="ignore", frozen=True
    )

    service_name: str = "search-indexer"
    port: int = 8003
    database_url: str = (
        "postgresql+asyncpg://tenx_search_indexer@127.0.0.1:5432/tenx_search_indexer"
    )
    # One bulk request per chunk of records: it is sent when this many records
    # are in hand, or when the linger after the first one is over.
    consumer_batch_size: int = Field(default=4000, ge=1, le=5000)
    bulk_linger_s: float = Field(default=0.05, ge=0, le=5)
    # The indices (tenx_common.data.elasticsearch): replicas per shard (0 on one node) and
    # how often new documents become searchable (bench/search.py: at 1 s a
    # new product was searchable after 1.44 s at p99, at 500 ms after 0.73 s).
    search_replicas: int = Field(default=0, ge=0, le=5)
    search_refresh_interval: str = Field(default="500ms", pattern=r"^[1-9][0-9]{0,4}(ms|s)$")
    # Reindex: the api it reads the catalog and the orders from (its admin
    # export), and an admin's access token for it (never stored in a file;
    # only the reindex command reads it).
    api_url: str = "http://127.0.0.1:8080"
    api_token: SecretStr | None = None
    reindex_page_size: int = Field(default=500, ge=1, le=1000)
