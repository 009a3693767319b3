"""Search on the real stack: the search-indexer consuming Kafka into
Elasticsearch, the api's search API through the edge, and a reindex."""

import asyncio
import base64
import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from elasticsearch import AsyncElasticsearch

from tenx_common.events import cloud_event
from tenx_common.events.catalog_products import ProductUpdated
from tenx_search_indexer.bootstrap import bootstrap
from tenx_search_indexer.service_layer.reindex import reindex
from tenx_search_indexer.settings import Settings as IndexerSettings
from tests.support.stack import (
    admin as log_in_admin,
)
from tests.support.stack import (
    eventually,
    index_differences,
    new_key,
    new_user,
    order_body,
    product_body,
)

PROBLEM = "application/problem+json"
INDEXER = "http://127.0.0.1:8003"


@pytest.fixture
async def es() -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(IndexerSettings().elasticsearch_url)
    yield client
    await client.close()


@pytest.fixture
async def admin(edge: httpx.AsyncClient) -> dict[str, str]:
    return await log_in_admin(edge)


async def create(edge: httpx.AsyncClient, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await edge.post("/v1/products", json=product_body(**fields), headers=admin)
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


async def search(edge: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await edge.get("/v1/search/products", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def searched(edge: httpx.AsyncClient, count: int, **params: Any) -> dict[str, Any]:
    """The search's answer once it has ``count`` hits."""

    async def check() -> dict[str, Any] | None:
        found = await search(edge, **params)
        return found if found["total"] == count else None

    return await eventually(check, timeout_s=30)


async def test_duplicate_and_reordered_events_never_take_a_document_back(
    es: AsyncElasticsearch, unique: str
) -> None:
    product_id = uuid.uuid4()

    def version(n: int) -> bytes:
        event = ProductUpdated(
            product_id=product_id,
            version=n,
            sku=f"SKU-{unique}",
            name=f"Reorder {unique} v{n}",
            description="",
            category="kitchen",
            price_cents=100 * n,
            currency="EUR",
            stock=n,
        )
        return json.dumps(cloud_event(event, source="/tests")).encode()

    producer = AIOKafkaProducer(bootstrap_servers=IndexerSettings().kafka_bootstrap_servers)
    await producer.start()
    try:
        for n in (2, 1, 2, 3, 2, 1):  # a duplicate, a late one, a replay
            await producer.send_and_wait(
                "catalog.products", version(n), key=str(product_id).encode()
            )
        # The last event is the oldest; the version 3 it refers back to stays.
        await producer.send_and_wait("catalog.products", version(3), key=str(product_id).encode())
    finally:
        await producer.stop()
    try:

        async def at_v3() -> dict[str, Any] | None:
            with contextlib.suppress(Exception):
                doc = await es.get(index="products", id=str(product_id))
                return dict(doc) if doc["_version"] == 3 else None
            return None

        doc = await eventually(at_v3, timeout_s=30)
        assert doc["_source"]["name"] == f"Reorder {unique} v3"
        assert doc["_source"]["price_cents"] == 300
        await asyncio.sleep(1.5)  # nothing behind it takes it back
        again = await es.get(index="products", id=str(product_id))
        assert (again["_version"], again["_source"]["stock"]) == (3, 3)
    finally:
        await es.delete(index="products", id=str(product_id), refresh=True)


async def test_a_product_is_found_and_its_price_and_stock_changes_show(
    edge: httpx.AsyncClient, admin: dict[str, str], unique: str
) -> None:
    word = f"zq{unique}"
    product = await create(edge, admin, name=f"Walnut {word} shelf", price_cents=4200, stock=5)
    found = await searched(edge, 1, q=word)
    assert found["items"][0]["id"] == product["id"]
    assert found["items"][0]["price_cents"] == 4200

    patched = await edge.patch(
        f"/v1/products/{product['id']}", json={"price_cents": 3900}, headers=admin
    )
    assert patched.status_code == 200

    async def price(expected: int) -> bool:
        return bool((await search(edge, q=word))["items"][0]["price_cents"] == expected)

    await eventually(lambda: price(3900), timeout_s=30)
    buyer = await new_user(edge)
    placed = await edge.post(
        "/v1/orders", json=order_body(product["id"], 2), headers=buyer | new_key()
    )
    assert placed.status_code == 201, placed.text

    async def stock() -> bool:
        return bool((await search(edge, q=word))["items"][0]["stock"] == 3)

    await eventually(stock, timeout_s=30)
    assert (await search(edge, q=word, in_stock="true"))["total"] == 1
    # Sold out by orders announced together (one StockChanged for the window):
    # it leaves the in-stock results.
    sold_out = await asyncio.gather(
        *(
            edge.post("/v1/orders", json=order_body(product["id"]), headers=buyer | new_key())
            for _ in range(3)
        )
    )
    assert [r.status_code for r in sold_out] == [201] * 3
    await searched(edge, 0, q=word, in_stock="true")
    assert (await search(edge, q=word))["items"][0]["stock"] == 0
    # Freshness and lag are on the indexer's /metrics.
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(f"{INDEXER}/metrics")).text
    assert (
        'tenx_consumer_lag{consumer="search-indexer",partition="0",topic="catalog.products"}'
        in (metrics)
    )
    indexed_count = re.search(r"^tenx_search_index_freshness_seconds_count (\S+)$", metrics, re.M)
    assert indexed_count is not None
    assert float(indexed_count.group(1)) > 0
    # Typos are forgiven, and type-ahead finds it from a word's first letters.
    assert (await search(edge, q=f"walnot {word}"))["total"] == 1
    suggested = await edge.get("/v1/search/suggest", params={"q": word[:8]})
    assert suggested.status_code == 200
    assert {s["id"] for s in suggested.json()["suggestions"]} == {product["id"]}
    assert suggested.json()["suggestions"][0]["text"] == f"Walnut {word} shelf"


async def test_facets_count_what_each_choice_would_return(
    edge: httpx.AsyncClient, admin: dict[str, str], unique: str
) -> None:
    word = f"fc{unique}"
    a, b = f"a-{unique}", f"b-{unique}"
    for category, price in ((a, 500), (a, 2000), (a, 7000), (b, 2000), (b, 60000)):
        await create(edge, admin, name=f"Facet {word}", category=category, price_cents=price)
    everything = await searched(edge, 5, q=word)
    assert everything["facets"]["category"] == [
        {"value": a, "count": 3},
        {"value": b, "count": 2},
    ]
    assert [r["count"] for r in everything["facets"]["price"]] == [1, 2, 1, 0, 1]
    assert everything["facets"]["price"][0] == {"from": None, "to": 1000, "count": 1}

    # A category filter narrows the hits and the price counts, not the
    # category counts (choosing b instead would still give 2).
    in_a = await search(edge, q=word, category=a)
    assert in_a["total"] == 3
    assert {item["category"] for item in in_a["items"]} == {a}
    assert in_a["facets"]["category"] == everything["facets"]["category"]
    assert [r["count"] for r in in_a["facets"]["price"]] == [1, 1, 1, 0, 0]

    priced = await search(edge, q=word, min_price=1000, max_price=10000)
    assert priced["total"] == 3
    assert priced["facets"]["category"] == [
        {"value": a, "count": 2},
        {"value": b, "count": 1},
    ]
    assert priced["facets"]["price"] == everything["facets"]["price"]


async def test_sorted_pages_by_search_after_cover_everything_once(
    edge: httpx.AsyncClient, admin: dict[str, str], unique: str
) -> None:
    word = f"pg{unique}"
    prices = [900, 100, 500, 300, 700, 300, 1100]
    for price in prices:
        await create(edge, admin, name=f"Paged {word}", price_cents=price)
    await searched(edge, len(prices), q=word)
    seen: list[int] = []
    ids: set[str] = set()
    cursor = None
    pages = 0
    while True:
        params = {"q": word, "sort": "price_asc", "limit": 2} | (
            {"cursor": cursor} if cursor else {}
        )
        page = await search(edge, **params)
        pages += 1
        seen += [item["price_cents"] for item in page["items"]]
        ids |= {item["id"] for item in page["items"]}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, len(ids), pages) == (sorted(prices), len(prices), 4)
    descending = await search(edge, q=word, sort="price_desc", limit=3)
    assert [i["price_cents"] for i in descending["items"]] == [1100, 900, 700]
    # A cursor belongs to its sort.
    other = await edge.get(
        "/v1/search/products",
        params={"q": word, "sort": "name", "cursor": descending["next_cursor"]},
    )
    assert other.status_code == 400, other.text
    assert other.json()["code"] == "invalid_cursor"


def forged(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"q": "x" * 201}, 422),
        ({"q": ""}, 422),
        ({"limit": 1000}, 422),
        ({"limit": 0}, 422),
        ({"min_price": -1}, 422),
        ({"min_price": 500, "max_price": 100}, 422),
        ({"category": "Kitchen; DROP"}, 422),
        ({"category": "k" * 65}, 422),
        ({"sort": "_script"}, 422),
        ({"cursor": "not base64!"}, 400),
        ({"cursor": "c" * 601}, 422),
        (
            {
                "sort": "price_asc",
                "cursor": forged({"sort": "price_asc", "after": [{"x": 1}, "id"]}),
            },
            400,
        ),
        ({"sort": "price_asc", "cursor": forged({"sort": "price_asc", "after": [1, 2, 3]})}, 400),
        ({"sort": "name", "cursor": forged({"sort": "name", "after": ["a" * 300, "id"]})}, 400),
        (
            {"sort": "price_asc", "cursor": forged({"sort": "price_asc", "after": [True, "id"]})},
            400,
        ),
    ],
)
async def test_hostile_search_input_is_a_problem_never_a_500(
    edge: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    response = await edge.get("/v1/search/products", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    "q",
    [
        'name:* OR description:"x" AND (',
        "*:*",
        '{"match_all": {}}',
        "\\\\ / ~1 ^9 [a TO z] && || !",
        "<script>alert(1)</script>",
        "é" * 200,
    ],
)
async def test_query_syntax_is_searched_as_text(edge: httpx.AsyncClient, q: str) -> None:
    # Sent as the text of a match query, never parsed as query syntax: a
    # "match everything" does not match everything.
    found = await search(edge, q=q)
    assert found["total"] < 50
    suggested = await edge.get("/v1/search/suggest", params={"q": q[:100]})
    assert suggested.status_code == 200


async def test_suggest_input_is_bounded(edge: httpx.AsyncClient) -> None:
    bad: list[dict[str, Any]] = [{"q": "x" * 101}, {}, {"q": "a", "limit": 50}]
    for params in bad:
        response = await edge.get("/v1/search/suggest", params=params)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_erasure_removes_every_document_of_the_user(
    edge: httpx.AsyncClient, admin: dict[str, str], es: AsyncElasticsearch
) -> None:
    product = await create(edge, admin, stock=10)
    buyer = await new_user(edge)
    user_id = (await edge.get("/v1/auth/me", headers=buyer)).json()["id"]
    for card in ("pm_card_visa", "pm_card_chargeDeclined"):
        placed = await edge.post(
            "/v1/orders", json=order_body(product["id"], card=card), headers=buyer | new_key()
        )
        assert placed.status_code == 201

    async def documents(count: int) -> bool:
        await es.indices.refresh(index="orders")
        found = await es.count(index="orders", query={"term": {"user_id": user_id}})
        return int(found["count"]) == count

    await eventually(lambda: documents(2), timeout_s=30)
    deletion = await edge.delete("/v1/auth/me", headers=buyer)
    assert deletion.status_code == 202
    deletion_id = deletion.json()["deletion_id"]

    async def completed() -> dict[str, Any] | None:
        status = await edge.get(f"/v1/auth/deletions/{deletion_id}", headers=admin)
        body: dict[str, Any] = status.json()
        return body if body.get("status") == "completed" else None

    done = await eventually(completed, timeout_s=60)
    assert "search-indexer" in {reply["service"] for reply in done["replies"]}
    assert await documents(0)
    found = await es.count(index="orders-*", query={"term": {"user_id": user_id}})
    assert found["count"] == 0


async def test_a_reindex_during_continuous_writes_ends_equal_to_the_databases(
    edge: httpx.AsyncClient, admin: dict[str, str], es: AsyncElasticsearch, unique: str
) -> None:
    buyer = await new_user(edge)
    stop = asyncio.Event()
    written = {"products": 0, "orders": 0}

    async def write(method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
        # Paced under the write rate limits; a 429 waits as told and tries again.
        while True:
            await asyncio.sleep(0.3)
            response = await edge.request(method, url, json=body, headers=headers)
            if response.status_code != 429:
                assert response.status_code < 300, response.text
                return response.json()
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def writer() -> None:
        products: list[str] = []
        n = 0
        while not stop.is_set():
            n += 1
            if n % 3 == 1 or not products:
                body = product_body(name=f"Live {unique} {n}", stock=50)
                products.append((await write("POST", "/v1/products", body, admin))["id"])
                written["products"] += 1
            elif n % 3 == 2:
                body = {"price_cents": 1000 + n}
                await write("PATCH", f"/v1/products/{products[-1]}", body, admin)
            else:
                await write("POST", "/v1/orders", order_body(products[0]), buyer | new_key())
                written["orders"] += 1

    before = {alias: await es.indices.get_alias(name=alias) for alias in ("products", "orders")}
    task = asyncio.create_task(writer())
    try:
        await asyncio.sleep(1)
        token = admin["Authorization"].removeprefix("Bearer ")
        settings = IndexerSettings(api_url=str(edge.base_url), api_token=token)
        async with (
            bootstrap(settings) as container,
            httpx.AsyncClient(base_url=settings.api_url, headers=admin, timeout=30) as api,
        ):
            reports = [
                await reindex(container.deps, alias, api=api) for alias in ("products", "orders")
            ]
        await asyncio.sleep(1)
    finally:
        stop.set()
        await task
    assert written["products"] >= 3, written
    assert written["orders"] >= 1, written
    for report, alias in zip(reports, ("products", "orders"), strict=True):
        assert report["exported"] > 0
        assert report["previous"] in before[alias].body
        assert set((await es.indices.get_alias(name=alias)).body) == {report["index"]}

    async def in_step() -> list[str] | None:
        problems = await index_differences(edge, admin, es)
        return None if problems else ["in step"]

    try:
        await eventually(in_step, timeout_s=60)
    except AssertionError:
        pytest.fail("\n".join((await index_differences(edge, admin, es))[:20]))


async def test_the_reindex_command(admin: dict[str, str]) -> None:
    async def run(*args: str, **env: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tenx_search_indexer",
            "reindex",
            *args,
            env=os.environ | env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, _, err = await run("products", TENX_SEARCH_INDEXER_API_TOKEN="")
    assert code != 0
    assert "TENX_SEARCH_INDEXER_API_TOKEN" in err
    code, _, err = await run("users", TENX_SEARCH_INDEXER_API_TOKEN="x")
    assert code != 0
    assert "unknown index users" in err
    token = admin["Authorization"].removeprefix("Bearer ")
    code, out, err = await run("products", TENX_SEARCH_INDEXER_API_TOKEN=token)
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["alias"] == "products"
    assert report["exported"] > 0
