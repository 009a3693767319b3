"""Elasticsearch: index and search a document with the Python client."""

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.elasticsearch import create_elasticsearch


async def test_index_and_search_a_document(api_settings: ApiSettings, unique: str) -> None:
    es = create_elasticsearch(api_settings)
    index = f"it-products-{unique}"
    try:
        await es.indices.create(
            index=index,
            settings={"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            mappings={"properties": {"name": {"type": "text"}, "sku": {"type": "keyword"}}},
        )
        await es.index(index=index, id="p1", document={"name": "Blue espresso cup", "sku": "CUP-1"})
        await es.index(index=index, id="p2", document={"name": "Red teapot", "sku": "POT-1"})
        await es.indices.refresh(index=index)
        result = await es.search(index=index, query={"match": {"name": "espresso"}})
        hits = result["hits"]["hits"]
        assert [hit["_id"] for hit in hits] == ["p1"]
        assert hits[0]["_source"]["sku"] == "CUP-1"
    finally:
        await es.indices.delete(index=index, ignore_unavailable=True)
        await es.close()
