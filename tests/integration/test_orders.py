"""Orders on the real stack: idempotency keys, stock that is never oversold,
authorization, bad input."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import CacheStats

from tenx_api.app import create_app
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tests.support.stack import (
    EDGE,
    eventually,
    new_key,
    new_product,
    new_user,
    order_body,
    patiently,
    stack,
)
from tests.support.stack import admin as log_in_admin


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=EDGE, timeout=30, limits=limits) as client:
        yield client


@pytest.fixture
async def admin(edge: httpx.AsyncClient) -> dict[str, str]:
    return await log_in_admin(edge)


order = order_body
key = new_key
PAYMENT = {"payment_method": "pm_card_visa"}


async def stock(edge: httpx.AsyncClient, product_id: str, reader: dict[str, str]) -> int:
    """The stock as a signed-in reader sees it: at once after a change (an
    anonymous reader may be served a near copy for a moment longer)."""
    found: int = (await edge.get(f"/v1/products/{product_id}", headers=reader)).json()["stock"]
    return found


async def count_orders(user_id: str) -> int:
    engine = primary_engine(ApiSettings())
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM orders WHERE user_id = :u"), {"u": user_id}
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


async def user_id(edge: httpx.AsyncClient, headers: dict[str, str]) -> str:
    uid: str = (await edge.get("/v1/me", headers=headers)).json()["user_id"]
    return uid


async def test_an_order_reserves_stock_and_replays_under_its_key(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=5)
    headers = user | key()
    first = await edge.post("/v1/orders", json=order(product_id, 2), headers=headers)
    assert first.status_code == 201, first.text
    placed = first.json()
    assert placed["status"] == "pending"
    assert placed["total_cents"] == 5000
    assert placed["currency"] == "EUR"
    assert await stock(edge, product_id, admin) == 3

    again = await edge.post("/v1/orders", json=order(product_id, 2), headers=headers)
    assert again.status_code == 201
    assert again.json() == placed
    assert again.headers["idempotent-replayed"] == "true"
    assert await stock(edge, product_id, admin) == 3

    reused = await edge.post("/v1/orders", json=order(product_id, 1), headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert await count_orders(await user_id(edge, user)) == 1


async def test_a_thousand_concurrent_duplicates_make_exactly_one_order(
    edge: httpx.AsyncClient, admin: dict[str, str], api_settings: ApiSettings
) -> None:
    # In-process, on the real database and Redis, with the rate limiter off:
    # through the edge it would refuse most of the thousand before they race.
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=1000)
    headers = user | key()
    app = create_app(api_settings.model_copy(update={"rate_limit_enabled": False}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=60
        ) as api,
    ):
        responses = await asyncio.gather(
            *(
                patiently(lambda: api.post("/v1/orders", json=order(product_id), headers=headers))
                for _ in range(1000)
            )
        )
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    in_use = [r for r in responses if r.status_code == 409]
    assert all(r.json()["code"] == "idempotency_key_in_use" for r in in_use)
    assert await count_orders(await user_id(edge, user)) == 1
    assert await stock(edge, product_id, admin) == 999


async def test_every_statement_of_a_placement_is_compiled_once(
    edge: httpx.AsyncClient, admin: dict[str, str], api_settings: ApiSettings
) -> None:
    """SQLAlchemy caches a statement's compiled form by its cache key; one it
    cannot key (a multi-row INSERT) is compiled again at every execution."""
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=100)
    app = create_app(api_settings.model_copy(update={"rate_limit_enabled": False}))
    compiled: Counter[tuple[str, str]] = Counter()
    counting = False

    def count(_c: Any, _cur: Any, statement: str, _p: Any, context: Any, _m: Any) -> None:
        if counting:
            compiled[(str(context.cache_hit), statement.split("\n")[0][:80])] += 1

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        event.listen(Engine, "after_cursor_execute", count)
        try:
            for n in range(15):
                counting = n >= 5  # the first ones compile and cache
                placed = await api.post("/v1/orders", json=order(product_id), headers=user | key())
                assert placed.status_code == 201, placed.text
        finally:
            event.remove(Engine, "after_cursor_execute", count)
    assert compiled  # the placements' statements were seen
    assert {hit for hit, _ in compiled} == {str(CacheStats.CACHE_HIT)}, compiled


async def test_two_hundred_orders_for_fifty_units_sell_exactly_fifty(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product_id = await new_product(edge, admin, stock=50)
    users = await asyncio.gather(*(new_user(edge) for _ in range(20)))

    async def place(user: dict[str, str]) -> httpx.Response:
        headers = user | key()  # one key per order, kept when it is sent again
        return await patiently(
            lambda: edge.post("/v1/orders", json=order(product_id), headers=headers)
        )

    responses = await asyncio.gather(*(place(users[i % 20]) for i in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50
    assert statuses.count(409) == 150
    assert all(r.json()["code"] == "out_of_stock" for r in responses if r.status_code == 409)
    assert await stock(edge, product_id, admin) == 0


async def test_orders_are_private_to_their_owner(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    alice, bob = await new_user(edge), await new_user(edge)
    product_id = await new_product(edge, admin, stock=10)
    placed = (await edge.post("/v1/orders", json=order(product_id), headers=alice | key())).json()
    path = f"/v1/orders/{placed['id']}"
    assert (await edge.get(path, headers=alice)).status_code == 200
    assert (await edge.get(path, headers=bob)).status_code == 404
    assert (await edge.get(path, headers=admin)).status_code == 200
    assert (await edge.get(path)).status_code == 401
    assert (await edge.get(f"/v1/orders/{uuid.uuid4()}", headers=alice)).status_code == 404
    mine = (await edge.get("/v1/orders", headers=alice)).json()["items"]
    theirs = (await edge.get("/v1/orders", headers=bob)).json()["items"]
    assert [o["id"] for o in mine] == [placed["id"]]
    assert theirs == []


async def test_own_orders_page_newest_first(edge: httpx.AsyncClient, admin: dict[str, str]) -> None:
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=10)
    placed = [
        (await edge.post("/v1/orders", json=order(product_id), headers=user | key())).json()["id"]
        for _ in range(3)
    ]
    first = (await edge.get("/v1/orders", params={"limit": 2}, headers=user)).json()
    second = (
        await edge.get(
            "/v1/orders", params={"limit": 2, "cursor": first["next_cursor"]}, headers=user
        )
    ).json()
    assert [o["id"] for o in first["items"] + second["items"]] == placed[::-1]
    assert second["next_cursor"] is None

    async def all_confirmed() -> bool:  # by the order saga
        page = await edge.get("/v1/orders", params={"status": "confirmed"}, headers=user)
        return len(page.json()["items"]) == 3

    await eventually(all_confirmed)
    pending = (await edge.get("/v1/orders", params={"status": "pending"}, headers=user)).json()
    assert pending["items"] == []


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda b: b["items"][0].update(quantity=0), 422, "validation_error"),
        (lambda b: b["items"][0].update(quantity=-3), 422, "validation_error"),
        (lambda b: b["items"][0].update(product_id=str(uuid.uuid4())), 422, "unknown_product"),
        (lambda b: b["items"].append(dict(b["items"][0])), 422, "validation_error"),
        (lambda b: b.update(coupon="FREE"), 422, "validation_error"),
        (lambda b: b.update(items=[]), 422, "validation_error"),
        (lambda b: b.update(payment_method="card"), 422, "validation_error"),
    ],
)
async def test_bad_orders_are_refused_and_change_nothing(
    edge: httpx.AsyncClient, admin: dict[str, str], mutate: Any, status: int, code: str
) -> None:
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=10)
    body = order(product_id)
    mutate(body)
    response = await edge.post("/v1/orders", json=body, headers=user | key())
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await count_orders(await user_id(edge, user)) == 0
    assert await stock(edge, product_id, admin) == 10


async def test_a_refused_line_undoes_the_lines_reserved_before_it(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The placement's one statement reserves line after line; a refusal at
    a later line (out of stock, another currency) leaves no stock taken."""
    user = await new_user(edge)
    # The lines are reserved in product order: the second one's stock is short.
    euros = sorted([await new_product(edge, admin, stock=10) for _ in range(2)], key=uuid.UUID)
    shortened = await edge.patch(f"/v1/products/{euros[1]}", json={"stock": 1}, headers=admin)
    assert shortened.status_code == 200, shortened.text
    dollars = await new_product(edge, admin, stock=10, currency="USD")
    short = {"items": [{"product_id": p, "quantity": 2} for p in euros], **PAYMENT}
    mixed = {"items": [{"product_id": p, "quantity": 1} for p in (*euros, dollars)], **PAYMENT}
    for body, status, code in ((short, 409, "out_of_stock"), (mixed, 422, "mixed_currencies")):
        response = await edge.post("/v1/orders", json=body, headers=user | key())
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
    assert await count_orders(await user_id(edge, user)) == 0
    assert [await stock(edge, p, admin) for p in (*euros, dollars)] == [10, 1, 10]


async def test_an_order_after_a_price_change_is_placed_at_the_new_price(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Each api instance prices lines at the price it last read; the database
    refuses an old price with the new one, and the placement runs again."""
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=10)
    for api_instance in range(2):  # through the edge: both instances learn the old price
        placed = await edge.post("/v1/orders", json=order(product_id), headers=user | key())
        assert placed.status_code == 201, placed.text
        assert placed.json()["total_cents"] == 2500, api_instance
    changed = await edge.patch(
        f"/v1/products/{product_id}", json={"price_cents": 3100}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    headers = user | key()
    for _ in range(2):
        placed = await edge.post("/v1/orders", json=order(product_id, 2), headers=headers)
        assert placed.status_code == 201, placed.text
        assert placed.json()["items"][0]["unit_price_cents"] == 3100
        assert placed.json()["total_cents"] == 6200
    assert await stock(edge, product_id, admin) == 6


async def test_an_order_needs_an_idempotency_key(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=1)
    response = await edge.post("/v1/orders", json=order(product_id), headers=user)
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"


async def test_idempotency_keys_are_kept_a_day_then_swept(api_settings: ApiSettings) -> None:
    from tenx_api.bootstrap import bootstrap
    from tenx_api.service_layer.orders import sweep_idempotency_keys

    owner = uuid.uuid4()
    engine = primary_engine(api_settings)
    insert = text(
        "INSERT INTO idempotency_keys VALUES "
        "(:u, :k, 'h', 201, '{}', now() - make_interval(hours => :h))"
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(insert, {"u": owner, "k": "old", "h": 25})
            await conn.execute(insert, {"u": owner, "k": "young", "h": 23})
        async with bootstrap(api_settings) as container:
            assert await sweep_idempotency_keys(deps=container.deps) >= 1
        async with engine.connect() as conn:
            left = await conn.execute(
                text("SELECT key FROM idempotency_keys WHERE user_id = :u"), {"u": owner}
            )
            assert list(left.scalars()) == ["young"]
    finally:
        await engine.dispose()


async def test_cancelling_a_pending_order_releases_its_stock(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    alice, bob = await new_user(edge), await new_user(edge)
    product_id = await new_product(edge, admin, stock=4)
    placed = (
        await edge.post("/v1/orders", json=order(product_id, 3), headers=alice | key())
    ).json()
    assert await stock(edge, product_id, admin) == 1
    path = f"/v1/orders/{placed['id']}/cancel"
    assert (await edge.post(path, headers=bob)).status_code == 404
    cancelled = await edge.post(path, headers=alice)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert await stock(edge, product_id, admin) == 4
    again = await edge.post(path, headers=alice)
    assert again.status_code == 200
    assert await stock(edge, product_id, admin) == 4


async def test_a_cancel_takes_the_sagas_row_before_the_orders_as_the_runner_does(
    edge: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # The saga runner records a step in one transaction: its saga's row, then
    # its order's (a confirmation, a release). Here a transaction holds a
    # confirmed order's saga row as the runner would, a cancel comes in and
    # waits for it, then the transaction takes the order's row. A cancel that
    # held the order's row by then deadlocked with it (PostgreSQL ends one of
    # the two after deadlock_timeout: the cancel answered 500).
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=2)
    placed = (await edge.post("/v1/orders", json=order(product_id), headers=user | key())).json()
    path = f"/v1/orders/{placed['id']}"

    async def confirmed() -> bool:  # the runner is done with it: nothing else waits on it
        return bool((await edge.get(path, headers=user)).json()["status"] == "confirmed")

    await eventually(confirmed)
    engine = primary_engine(ApiSettings())
    try:
        async with engine.connect() as runner, engine.connect() as watcher:
            await runner.execute(
                text("UPDATE sagas SET updated_at = now() WHERE id = :id"), {"id": placed["id"]}
            )
            cancel = asyncio.create_task(edge.post(f"{path}/cancel", headers=user))

            async def cancel_waits_on_the_saga() -> bool:
                waiting = await watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query ILIKE '%sagas%'"
                    )
                )
                await watcher.rollback()  # the next poll reads a new snapshot of the activity
                return bool(waiting)

            await eventually(cancel_waits_on_the_saga, timeout_s=30)
            await runner.execute(
                text("UPDATE orders SET updated_at = now() WHERE id = :id"), {"id": placed["id"]}
            )
            await runner.commit()
        cancelled = await cancel
    finally:
        await engine.dispose()
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert await stock(edge, product_id, admin) == 2


async def test_new_orders_wait_while_the_saga_backlog_is_past_its_bound(
    edge: httpx.AsyncClient, admin: dict[str, str], api_settings: ApiSettings
) -> None:
    # An api of its own, bound at 1 s; the sagas' runner (api-worker) stopped,
    # so the saga of an order placed meanwhile waits.
    user = await new_user(edge)
    product_id = await new_product(edge, admin, stock=10)
    settings = api_settings.model_copy(
        update={"rate_limit_enabled": False, "saga_backlog_max_age_s": 1.0,
                "saga_backlog_poll_s": 0.2}
    )  # fmt: skip
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):

        async def place() -> httpx.Response:
            return await api.post("/v1/orders", json=order(product_id), headers=user | key())

        await stack("stop", "api-worker")
        try:
            first = await place()
            assert first.status_code == 201, first.text

            refusal_now = app.state.wiring.refusals["POST /v1/orders"]

            async def behind() -> bool:  # the backlog measured past its bound
                return refusal_now() is not None

            await eventually(behind, timeout_s=20)
            refusal = await place()
            # Answered before admission, counted with admission's refusals.
            refused = app.state.metrics.refused.labels("overloaded")._value.get()
        finally:
            await stack("start", "api-worker")

        async def placed() -> httpx.Response | None:
            answer = await place()
            return answer if answer.status_code == 201 else None

        assert await eventually(placed, timeout_s=60)  # the runner caught up
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.json()["code"] == "overloaded"
    assert int(refusal.headers["retry-after"]) >= 1
    assert refused == 1
    # A refused order wrote nothing: the first and the last are the user's orders.
    assert await count_orders(await user_id(edge, user)) == 2
