"""Elasticsearch: the client, and the indices the search-indexer writes and the
api reads, defined here once.

Each index is reached through an alias (``products``, ``orders``) that points
at one concrete index (``products-<n>``): a reindex builds a new concrete
index and swaps the alias in one atomic call, so readers never see a half-built
index. Mappings are strict (a field nobody declared is refused), and
``refresh_interval`` is always set: left at the default, a shard that saw no
search for 30 s stops refreshing and the next search waits for it.

The local distribution (the integ-test zip) has no analysis-common module, so
only what the server itself has is used: the standard analyzer, the
lowercase normalizer, the completion suggester, fuzziness.
"""

import time
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError, NotFoundError

from tenx_common.settings import ElasticsearchSettings
from tenx_common.web.health import Check


def create_elasticsearch(settings: ElasticsearchSettings) -> AsyncElasticsearch:
    return AsyncElasticsearch(
        settings.elasticsearch_url,
        request_timeout=settings.elasticsearch_request_timeout_s,
        max_retries=1,  # a refused connection once more; a timeout is not retried
    )


def elasticsearch_check(client: AsyncElasticsearch) -> Check:
    async def probe() -> None:
        health = await client.cluster.health(timeout="1s")
        if health["status"] == "red":
            raise RuntimeError("cluster health is red")

    return Check("elasticsearch", probe)


KEYWORD = {"type": "keyword"}


@dataclass(frozen=True, slots=True)
class IndexSpec:
    alias: str
    mappings: dict[str, Any]

    def settings(self, *, replicas: int, refresh_interval: str) -> dict[str, Any]:
        return {
            "number_of_shards": 1,
            "number_of_replicas": replicas,
            "refresh_interval": refresh_interval,
            "max_result_window": 10_000,
        }


PRODUCTS = IndexSpec(
    alias="products",
    mappings={
        "dynamic": "strict",
        "properties": {
            "id": KEYWORD,
            "sku": KEYWORD,
            "name": {
                "type": "text",
                "fields": {"sort": {"type": "keyword", "normalizer": "lowercase"}},
            },
            "description": {"type": "text"},
            "category": KEYWORD,
            "price_cents": {"type": "long"},
            "currency": KEYWORD,
            "stock": {"type": "integer"},
            "version": {"type": "long"},
            "updated_at": {"type": "date"},
            # Type-ahead: the name from each of its words on (so "phone"
            # finds "Smart phone"); the standard analyzer lowercases.
            "suggest": {"type": "completion", "analyzer": "standard"},
        },
    },
)

ORDERS = IndexSpec(
    alias="orders",
    mappings={
        "dynamic": "strict",
        "properties": {
            "id": KEYWORD,
            "user_id": KEYWORD,
            "status": KEYWORD,
            "total_cents": {"type": "long"},
            "currency": KEYWORD,
            "version": {"type": "long"},
            "updated_at": {"type": "date"},
        },
    },
)

INDICES = (PRODUCTS, ORDERS)


def new_index_name(spec: IndexSpec) -> str:
    return f"{spec.alias}-{time.time_ns() // 1_000_000}"


async def create_index(
    client: AsyncElasticsearch,
    spec: IndexSpec,
    name: str,
    *,
    replicas: int,
    refresh_interval: str,
) -> None:
    """The concrete index ``name`` with ``spec``'s mappings; nothing when it exists."""
    try:
        await client.indices.create(
            index=name,
            mappings=spec.mappings,
            settings=spec.settings(replicas=replicas, refresh_interval=refresh_interval),
        )
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise


async def aliased_index(client: AsyncElasticsearch, alias: str) -> str | None:
    """The concrete index behind ``alias``; None when the alias does not exist."""
    try:
        found = await client.indices.get_alias(name=alias)
    except NotFoundError:
        return None
    names = sorted(found.body)
    return names[-1] if names else None


async def ensure_indices(
    client: AsyncElasticsearch, *, replicas: int, refresh_interval: str
) -> None:
    """Each alias and a first index behind it, when missing (a fresh cluster);
    an existing one gets the replicas and refresh interval of the settings.
    Safe to run from many processes at once: the names are fixed."""
    for spec in INDICES:
        if await aliased_index(client, spec.alias) is not None:
            await client.indices.put_settings(
                index=spec.alias,
                settings={"number_of_replicas": replicas, "refresh_interval": refresh_interval},
            )
            continue
        first = f"{spec.alias}-1"
        await create_index(
            client, spec, first, replicas=replicas, refresh_interval=refresh_interval
        )
        await client.indices.put_alias(index=first, name=spec.alias)


async def swap_alias(client: AsyncElasticsearch, spec: IndexSpec, index: str) -> str | None:
    """Point ``spec``'s alias at ``index`` in one atomic step; the index it left."""
    old = await aliased_index(client, spec.alias)
    actions: list[dict[str, Any]] = [{"add": {"index": index, "alias": spec.alias}}]
    if old is not None and old != index:
        actions.insert(0, {"remove": {"index": old, "alias": spec.alias}})
    await client.indices.update_aliases(actions=actions)
    return old
