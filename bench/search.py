"""Search, measured on the running stack.

- Create to searchable: 60 products created through the edge as an admin,
  one every 0.5 s (under the admin's write rate limit); for each, the time
  from sending the POST to the first search of Elasticsearch (the ``products``
  alias, polled every 20 ms) that finds it: the api's commit, the outbox
  relay, Kafka, the stack's search-indexer and the index's refresh. p50, p99.
- Indexer throughput: 50,000 product events produced beforehand to a private
  topic (3 partitions), each with a traceparent (10 % sampled, as deployed);
  the indexer consumer (the same code, its own group, traces exported to the
  stack's Jaeger) bulk-writes them into a private index: documents per second
  from its first bulk to the last document written (the group join before it
  is Kafka's fixed 3 s initial rebalance delay). Baseline in the same run: the same documents
  bulk-written straight into another private index by one client loop
  (1,000 a request), which is the ceiling of this Elasticsearch here.
- Search latency: the api's search (query building and Elasticsearch, the
  same code the route runs) over private indices of 1,000 and of 100,000
  products; 300 searches each, a mix of text, typos, filters, facets and
  sorts, one at a time; p50 and p95.

Writes bench/results/search.json. Run: make bench (the stack must be up).
"""

import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import AsyncElasticsearch
from tests.support.stack import EDGE, admin, product_body

from tenx_api.service_layer.search import ProductSearch, search_products
from tenx_common.data.elasticsearch import PRODUCTS, create_index
from tenx_common.events import cloud_event
from tenx_common.events.catalog_products import ProductUpdated
from tenx_common.messaging.consumer import running
from tenx_common.messaging.topics import TopicSettings, ensure_topics
from tenx_common.observability.telemetry import create_tracer_provider
from tenx_search_indexer.adapters.orm import dead_letters, inbox
from tenx_search_indexer.bootstrap import bootstrap
from tenx_search_indexer.domain import product_document
from tenx_search_indexer.service_layer.indexing import Indexer, bulk_write
from tenx_search_indexer.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CREATED = 60
EVENTS = 50_000
SEARCHES = 300
WORDS = [
    "oak",
    "walnut",
    "steel",
    "glass",
    "linen",
    "wool",
    "cotton",
    "brass",
    "copper",
    "marble",
    "smart",
    "compact",
    "classic",
    "modern",
    "rustic",
    "nordic",
    "vintage",
    "urban",
    "travel",
    "studio",
    "desk",
    "floor",
    "wall",
    "table",
    "lamp",
    "chair",
    "shelf",
    "mug",
    "bowl",
    "kettle",
    "blanket",
    "pillow",
    "rug",
    "mirror",
    "clock",
    "speaker",
    "headphones",
    "charger",
    "backpack",
    "bottle",
    "jacket",
]
CATEGORIES = [f"cat-{i}" for i in range(20)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def fake_product(rng: random.Random, n: int) -> dict[str, Any]:
    name = " ".join(rng.sample(WORDS, 3)).capitalize()
    return {
        "product_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "version": 1,
        "sku": f"B-{n}",
        "name": name,
        "description": " ".join(rng.choices(WORDS, k=12)),
        "category": rng.choice(CATEGORIES),
        "price_cents": rng.randint(100, 100_000),
        "currency": "EUR",
        "stock": rng.randint(0, 50),
    }


async def create_to_searchable(es: AsyncElasticsearch) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    latencies: list[float] = []

    async def one(edge: httpx.AsyncClient, headers: dict[str, str], n: int) -> None:
        word = f"fresh{tag}n{n}"
        started = time.perf_counter()
        created = await edge.post(
            "/v1/products", json=product_body(name=f"Bench {word}"), headers=headers
        )
        created.raise_for_status()
        while time.perf_counter() - started < 30:
            found = await es.search(index=PRODUCTS.alias, query={"match": {"name": word}}, size=0)
            if found["hits"]["total"]["value"]:
                latencies.append((time.perf_counter() - started) * 1000)
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{word} not searchable within 30 s")

    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as edge:
        headers = await admin(edge)
        tasks = []
        for n in range(CREATED):
            tasks.append(asyncio.create_task(one(edge, headers, n)))
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks)
    return {
        "products": CREATED,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": percentile(latencies, 1.0),
        "target_p99_ms": 1500,
    }


async def indexer_throughput(settings: Settings) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"bench.products-{tag}", f"bench-indexer-{tag}"
    index, baseline_index = f"bench-products-{tag}", f"bench-baseline-{tag}"
    rng = random.Random(7)
    products = [fake_product(rng, n) for n in range(EVENTS)]
    await ensure_topics(TopicSettings(), names=(topic, f"dlq.{group}"))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20, acks="all"
    )
    await producer.start()
    try:
        for product in products:
            event = ProductUpdated.model_validate(product)
            # As the relay sends it: under the request's trace, 10 % of them sampled.
            flags = "01" if rng.random() < 0.1 else "00"
            traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-{flags}"
            await producer.send(
                topic,
                json.dumps(cloud_event(event, source="/bench")).encode(),
                key=product["product_id"].encode(),
                headers=[("traceparent", traceparent.encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()
    # As deployed: 10 % of traces sampled, exported to the stack's Jaeger.
    provider = create_tracer_provider(settings.model_copy(update={"trace_sample_ratio": 0.1}))
    async with bootstrap(settings) as container:
        deps = container.deps
        for name in (index, baseline_index):
            await create_index(
                deps.es,
                PRODUCTS,
                name,
                replicas=0,
                refresh_interval=settings.search_refresh_interval,
            )
        try:
            # Baseline: the same documents, straight into Elasticsearch.
            documents = [product_document(p, updated_at=None) for p in products]
            started = time.perf_counter()
            for at in range(0, len(documents), 1000):
                await bulk_write(deps.es, documents[at : at + 1000], index=baseline_index)
            baseline_s = time.perf_counter() - started

            indexer = Indexer(
                es=deps.es,
                erased=deps.erased,
                targets={PRODUCTS.alias: index},
                name=group,
                settings=settings,
                uow=deps.uow,
                engine=deps.engine,
                inbox=inbox,
                dead_letters=dead_letters,
                handlers={},
                tracer=provider.get_tracer("bench"),
                chunk_size=settings.consumer_batch_size,
                linger_s=settings.bulk_linger_s,
            )
            indexer.topics = [topic]
            started = time.perf_counter()
            first: tuple[float, int] | None = None  # from the first bulk on (not the group join)
            async with running(indexer):
                while (done := indexer._outcomes["indexed"]) < EVENTS:
                    if first is None and done:
                        first = (time.perf_counter(), done)
                    await asyncio.sleep(0.01)
                    if time.perf_counter() - started > 300:
                        raise AssertionError(f"indexed {indexer._outcomes} in 300 s")
                assert first is not None
                elapsed = time.perf_counter() - first[0]
                counted = EVENTS - first[1]
            provider.shutdown()
        finally:
            await deps.es.indices.delete(index=f"{index},{baseline_index}")
            admin_client = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
            await admin_client.start()
            try:
                await admin_client.delete_topics([topic, f"dlq.{group}"])
            finally:
                await admin_client.close()
    indexer_rate = counted / elapsed
    baseline_rate = EVENTS / baseline_s
    return {
        "documents": EVENTS,
        "bulk_size": settings.consumer_batch_size,
        "linger_ms": settings.bulk_linger_s * 1000,
        "indexer_docs_per_s": round(indexer_rate),
        "baseline_direct_bulk_docs_per_s": round(baseline_rate),
        "ratio_to_baseline": round(indexer_rate / baseline_rate, 2),
        "target_docs_per_s": 5000,
    }


def queries(rng: random.Random) -> list[ProductSearch]:
    found = []
    for n in range(SEARCHES):
        kind = n % 5
        word = rng.choice(WORDS)
        if kind == 0:
            found.append(ProductSearch(q=word))
        elif kind == 1:  # a typo
            found.append(ProductSearch(q=word[:-1] + "x" if len(word) > 4 else word))
        elif kind == 2:
            found.append(
                ProductSearch(q=f"{word} {rng.choice(WORDS)}", category=rng.choice(CATEGORIES))
            )
        elif kind == 3:
            low = rng.randint(100, 50_000)
            found.append(
                ProductSearch(
                    min_price=low, max_price=low + 20_000, sort="price_asc", in_stock=True
                )
            )
        else:
            found.append(ProductSearch(category=rng.choice(CATEGORIES), sort="name"))
    return found


async def search_latency(settings: Settings, es: AsyncElasticsearch) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rng = random.Random(11)
    for size in (1_000, 100_000):
        index = f"bench-search-{size}-{uuid.uuid4().hex[:6]}"
        await create_index(es, PRODUCTS, index, replicas=0, refresh_interval="-1")
        try:
            for at in range(0, size, 2000):
                batch = [
                    product_document(fake_product(rng, at + i), updated_at=None)
                    for i in range(min(2000, size - at))
                ]
                await bulk_write(es, batch, index=index)
            await es.indices.refresh(index=index)
            await es.indices.forcemerge(index=index, max_num_segments=1)
            mix = queries(rng)
            for search in mix[:20]:  # warm up
                await search_products(es, search, index=index)
            latencies = []
            for search in mix:
                started = time.perf_counter()
                await search_products(es, search, index=index)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            await es.indices.delete(index=index)
        results[f"products_{size}"] = {
            "searches": len(mix),
            "p50_ms": percentile(latencies, 0.50),
            "p95_ms": percentile(latencies, 0.95),
        }
    return results


async def run(only: str | None) -> dict[str, Any]:
    settings = Settings()
    es = AsyncElasticsearch(settings.elasticsearch_url, request_timeout=60)
    parts: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "create_to_searchable": lambda: create_to_searchable(es),
        "indexer_throughput": lambda: indexer_throughput(settings),
        "search_latency": lambda: search_latency(settings, es),
    }
    try:
        results: dict[str, Any] = {}
        for name, part in parts.items():
            if only in (None, name):
                results[name] = await part()
        return results | {"refresh_interval": settings.search_refresh_interval}
    finally:
        await es.close()


def main() -> None:
    only = sys.argv[1] if len(sys.argv) == 2 else None
    results = asyncio.run(run(only))
    if only is not None:  # one part, to look into it: printed, not recorded
        print(json.dumps(results, indent=2))
        return
    out = ROOT / "bench" / "results" / "search.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
