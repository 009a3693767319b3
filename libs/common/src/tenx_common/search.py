"""The Elasticsearch client (the search port every search feature goes through)."""

from elasticsearch import AsyncElasticsearch

from tenx_common.health import Check
from tenx_common.settings import ElasticsearchSettings


def create_elasticsearch(settings: ElasticsearchSettings) -> AsyncElasticsearch:
    return AsyncElasticsearch(settings.elasticsearch_url, request_timeout=5, max_retries=1)


def elasticsearch_check(client: AsyncElasticsearch) -> Check:
    async def probe() -> None:
        health = await client.cluster.health(timeout="1s")
        if health["status"] == "red":
            raise RuntimeError("cluster health is red")

    return Check("elasticsearch", probe)
