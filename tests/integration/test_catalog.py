"""The catalog on the real stack: admin writes, public reads through the cache."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.cache import Cache, NearCache, create_redis
from tenx_common.data.db import primary_engine
from tests.support.stack import API_PORTS, EDGE, api_metric, eventually, new_user, product_body
from tests.support.stack import admin as log_in_admin


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as client:
        yield client


@pytest.fixture
async def admin(edge: httpx.AsyncClient) -> dict[str, str]:
    return await log_in_admin(edge)


@pytest.fixture
async def user(edge: httpx.AsyncClient) -> dict[str, str]:
    return await new_user(edge, "cat")


def product(**overrides: Any) -> dict[str, Any]:
    return product_body(**{"price_cents": 1299} | overrides)


async def test_admin_creates_and_anyone_reads_with_etag(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await edge.post("/v1/products", json=product(), headers=admin)
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    read = await edge.get(f"/v1/products/{product_id}")
    assert read.status_code == 200
    assert read.json()["price_cents"] == 1299
    etag = read.headers["etag"]
    cached = await edge.get(f"/v1/products/{product_id}", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.headers["etag"] == etag


async def test_an_update_is_seen_at_once_and_leaves_events(
    edge: httpx.AsyncClient, admin: dict[str, str], api_settings: ApiSettings
) -> None:
    product_id = (await edge.post("/v1/products", json=product(), headers=admin)).json()["id"]
    before = await edge.get(f"/v1/products/{product_id}")  # now cached
    changed = await edge.patch(
        f"/v1/products/{product_id}", json={"price_cents": 999, "stock": 3}, headers=admin
    )
    assert changed.status_code == 200
    after = await edge.get(f"/v1/products/{product_id}", headers=admin)
    assert after.json()["price_cents"] == 999
    assert after.json()["version"] == 2
    assert after.headers["etag"] != before.headers["etag"]
    engine = primary_engine(api_settings)

    async def events() -> list[str] | None:
        async with engine.connect() as conn:
            types = await conn.execute(
                text("SELECT type FROM outbox WHERE key = :k"), {"k": product_id}
            )
            found = sorted(types.scalars())
        return found if len(found) == 3 else None

    try:
        # StockChanged comes from the stock announcer, within its window
        assert await eventually(events, timeout_s=10) == [
            "tenx.catalog.product.created.v1",
            "tenx.catalog.product.stock_changed.v2",
            "tenx.catalog.product.updated.v1",
        ]
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "body",
    [
        product(price_cents=0),
        product(price_cents=-5),
        product(stock=-1),
        product(currency="euro"),
        product(sku=""),
        product(name="x" * 201),
        product(color="red"),
    ],
)
async def test_bad_products_are_refused_and_nothing_is_created(
    edge: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], api_settings: ApiSettings
) -> None:
    response = await edge.post("/v1/products", json=body, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    engine = primary_engine(api_settings)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM products WHERE sku = :s"), {"s": body["sku"]}
            )
            assert found.scalar_one() == 0
    finally:
        await engine.dispose()


async def test_only_admins_write_the_catalog(
    edge: httpx.AsyncClient, admin: dict[str, str], user: dict[str, str]
) -> None:
    assert (await edge.post("/v1/products", json=product())).status_code == 401
    assert (await edge.post("/v1/products", json=product(), headers=user)).status_code == 403
    product_id = (await edge.post("/v1/products", json=product(), headers=admin)).json()["id"]
    patch = await edge.patch(f"/v1/products/{product_id}", json={"stock": 0}, headers=user)
    assert patch.status_code == 403
    body = product()
    assert (await edge.post("/v1/products", json=body, headers=admin)).status_code == 201
    again = await edge.post("/v1/products", json=body, headers=admin)
    assert again.status_code == 409
    assert again.json()["code"] == "sku_taken"


async def test_keyset_pages_cover_a_category_once(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = f"it-{uuid.uuid4().hex[:8]}"
    created = {
        (await edge.post("/v1/products", json=product(category=category), headers=admin)).json()[
            "id"
        ]
        for _ in range(5)
    }
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"category": category, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        # As the writer: read-your-writes (an anonymous reader may be a moment late).
        page = (await edge.get("/v1/products", params=params, headers=admin)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(created)
    forged = await edge.get("/v1/products", params={"cursor": "not-a-cursor"})
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_cursor"
    huge = await edge.get("/v1/products", params={"limit": 100000})
    assert huge.status_code == 422


async def test_unknown_product_is_404(edge: httpx.AsyncClient) -> None:
    response = await edge.get(f"/v1/products/{uuid.uuid4()}")
    assert response.status_code == 404
    assert (await edge.get("/v1/products/not-a-uuid")).status_code == 422


async def test_concurrent_misses_on_one_key_load_once(api_settings: ApiSettings) -> None:
    # Two caches stand for the two api processes; 500 requests miss at once.
    redis = create_redis(api_settings)
    loads = 0

    async def load() -> bytes:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)  # a database read
        return b'{"id": "x"}'

    try:
        prefix = f"it:{uuid.uuid4().hex}"
        caches = [Cache(redis, prefix=prefix) for _ in range(2)]
        results = await asyncio.gather(
            *(caches[i % 2].get_or_load("product:x", load, ttl_s=30) for i in range(500))
        )
    finally:
        await redis.aclose()
    assert set(results) == {b'{"id": "x"}'}
    assert loads == 1


async def test_five_hundred_concurrent_misses_through_the_edge_read_the_database_once(
    admin: dict[str, str],
) -> None:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=EDGE, timeout=30, limits=limits) as edge:
        created = await edge.post("/v1/products", json=product(), headers=admin)
        product_id = created.json()["id"]
        changed = await edge.patch(f"/v1/products/{product_id}", json={"stock": 7}, headers=admin)
        assert changed.status_code == 200  # the cached copy is gone
        before = await api_metric("tenx_db_reads_total")
        responses = await asyncio.gather(
            *(edge.get(f"/v1/products/{product_id}") for _ in range(500))
        )
        reads = await api_metric("tenx_db_reads_total") - before
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["stock"] for r in responses} == {7}
    assert reads == 1


async def test_a_rebuild_that_read_before_a_change_never_caches_the_old_value(
    api_settings: ApiSettings,
) -> None:
    redis = create_redis(api_settings)
    cache = Cache(redis, prefix=f"it:{uuid.uuid4().hex}")
    source = {"value": b"old"}
    read_done, changed = asyncio.Event(), asyncio.Event()

    async def slow_load() -> bytes:
        value = source["value"]  # read before the change commits...
        read_done.set()
        await changed.wait()  # ...and stored after it
        return value

    async def load() -> bytes:
        return source["value"]

    try:
        rebuild = asyncio.create_task(cache.get_or_load("k", slow_load, ttl_s=30))
        await read_done.wait()
        source["value"] = b"new"
        await cache.invalidate("k")
        changed.set()
        assert await rebuild == b"old"  # that caller saw the old value, once
        assert await cache.get_or_load("k", load, ttl_s=30) == b"new"
    finally:
        await redis.aclose()


async def test_invalidations_that_arrive_together_share_a_round_trip(
    api_settings: ApiSettings,
) -> None:
    # Fifty orders' products dropped at once: each key gone and its generation
    # bumped, in fewer messages to the near copies than invalidations.
    redis, listener = create_redis(api_settings), create_redis(api_settings)
    near = NearCache(channel=f"it:near:{uuid.uuid4().hex}")
    cache = Cache(redis, prefix=f"it:{uuid.uuid4().hex}", near=near)
    keys = [f"product:{n}" for n in range(50)]

    async def load() -> bytes:
        return b"cached"

    pubsub = listener.pubsub()
    await pubsub.subscribe(near.channel)
    try:
        for key in keys:
            await cache.get_or_load(key, load, ttl_s=60)
        generations = [await redis.get(f"{cache._key(key)}:gen") for key in keys]
        await asyncio.gather(*(cache.invalidate(key) for key in keys))
        assert not any([await redis.exists(cache._key(key)) for key in keys])
        after = [await redis.get(f"{cache._key(key)}:gen") for key in keys]
        assert all(int(a or 0) == int(b or 0) + 1 for a, b in zip(after, generations, strict=True))
        dropped: list[list[str]] = []
        deadline = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                dropped.append(message["data"].decode().split("\n"))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
        await redis.aclose()
    assert sorted(key for keys in dropped for key in keys) == sorted(keys)  # each told once
    # Together: one at a time, each invalidation was its own round trip and message.
    assert len(dropped) <= 2


async def test_anonymous_copies_on_both_instances_drop_a_change_within_moments(
    admin: dict[str, str],
) -> None:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as edge:
        product_id = (await edge.post("/v1/products", json=product(), headers=admin)).json()["id"]
        urls = [f"http://127.0.0.1:{port}/v1/products/{product_id}" for port in API_PORTS]
        for url in urls:  # each instance now holds a near copy
            assert (await edge.get(url)).json()["stock"] == 10
        changed = await edge.patch(f"/v1/products/{product_id}", json={"stock": 4}, headers=admin)
        assert changed.status_code == 200
        for url in urls:
            assert (await edge.get(url, headers=admin)).json()["stock"] == 4  # the writer: at once
            deadline = asyncio.get_running_loop().time() + 1.0  # well under the 5 s copy life
            while (await edge.get(url)).json()["stock"] != 4:
                assert asyncio.get_running_loop().time() < deadline, url
                await asyncio.sleep(0.01)
