"""Builds the search-indexer service's clients once, at startup, and closes them at shutdown."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from elasticsearch import AsyncElasticsearch

from tenx_common.db import Engines, create_engines, postgres_check
from tenx_common.health import Check
from tenx_common.kafka import kafka_check
from tenx_common.search import create_elasticsearch, elasticsearch_check
from tenx_search_indexer.settings import Settings


@dataclass
class Container:
    engines: Engines
    elasticsearch: AsyncElasticsearch
    checks: list[Check] = field(default_factory=list)


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Container]:
    engines = create_engines(settings)
    elasticsearch = create_elasticsearch(settings)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engines.dispose)
        stack.push_async_callback(elasticsearch.close)
        yield Container(
            engines=engines,
            elasticsearch=elasticsearch,
            checks=[
                postgres_check(engines.primary),
                kafka_check(settings),
                elasticsearch_check(elasticsearch),
            ],
        )
