"""Search without Elasticsearch: the documents the indexer writes (from events
and from the export alike) and the requests the api builds from user input."""

import uuid
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, ConnectionError, HttpHeaders, NodeConfig
from elasticsearch import ApiError

from tenx_api.service_layer.search import (
    PRICE_RANGES,
    SORTS,
    ProductSearch,
    build_query,
    search_products,
    suggest,
)
from tenx_common.events.catalog_products import StockChanged
from tenx_common.events.orders_orders import OrderCancelled, OrderConfirmed, OrderPlaced
from tenx_common.web.pagination import encode_cursor
from tenx_common.web.problems import ProblemError
from tenx_search_indexer.domain import ORDER_VERSIONS, from_event, from_export, suggestions

NODE = NodeConfig("http", "127.0.0.1", 9200)
PRODUCT = {
    "sku": "S-1",
    "name": "Smart desk lamp",
    "description": "Bright.",
    "category": "lighting",
    "price_cents": 4500,
    "currency": "EUR",
    "stock": 3,
}


def test_a_product_document_is_the_same_from_an_event_and_from_the_export() -> None:
    product_id = uuid.uuid4()
    event = StockChanged(product_id=product_id, version=7, **PRODUCT)
    live = from_event(event, occurred_at="2026-11-30T10:00:00+00:00")
    exported = from_export(
        "products",
        {"id": str(product_id), "version": 7, "updated_at": "2026-11-30T10:00:00+00:00"}
        | PRODUCT
        | {"created_at": "2026-11-01T00:00:00+00:00"},
    )
    assert live == exported
    assert (live.index, live.id, live.version, live.user_id) == (
        "products",
        str(product_id),
        7,
        None,
    )
    assert live.source["suggest"] == {"input": ["Smart desk lamp", "desk lamp", "lamp"]}


def test_an_orders_version_is_its_status_rank_so_it_only_moves_forward() -> None:
    order_id, user_id = uuid.uuid4(), uuid.uuid4()
    ids = {"order_id": order_id, "user_id": user_id}
    placed = from_event(
        OrderPlaced(**ids, items=[], total_cents=900, currency="EUR", payment_method="pm"),
        occurred_at=None,
    )
    confirmed = from_event(
        OrderConfirmed(**ids, total_cents=900, currency="EUR", payment_id="p"), occurred_at=None
    )
    cancelled = from_event(
        OrderCancelled(**ids, reason="customer", total_cents=900, currency="EUR"),
        occurred_at=None,
    )
    assert [d.version for d in (placed, confirmed, cancelled)] == [1, 2, 3]
    assert [d.source["status"] for d in (placed, confirmed, cancelled)] == list(ORDER_VERSIONS)
    assert {d.user_id for d in (placed, confirmed, cancelled)} == {str(user_id)}
    assert cancelled.source["total_cents"] == 900


def test_suggestions_start_at_each_word_and_stay_bounded() -> None:
    assert suggestions("One") == ["One"]
    assert len(suggestions(" ".join(f"w{i}" for i in range(30)))) == 8


def test_user_text_only_reaches_elasticsearch_as_match_text() -> None:
    hostile = 'name:* OR {"match_all": {}} \\ (['
    body = build_query(ProductSearch(q=hostile))
    text = body["query"]["bool"]["must"]["bool"]
    assert text["must"]["multi_match"]["query"] == hostile
    assert text["should"]["match_phrase"]["name"]["query"] == hostile
    assert "query_string" not in repr(body)
    assert "simple_query_string" not in repr(body)


def test_facets_are_disjunctive() -> None:
    body = build_query(ProductSearch(q="lamp", category="lighting", min_price=100, in_stock=True))
    category = [{"term": {"category": "lighting"}}]
    price = [{"range": {"price_cents": {"gte": 100}}}]
    assert body["post_filter"] == {"bool": {"filter": category + price}}
    assert body["aggs"]["category"]["filter"] == {"bool": {"filter": price}}
    assert body["aggs"]["price"]["filter"] == {"bool": {"filter": category}}
    assert body["query"]["bool"]["filter"] == [{"range": {"stock": {"gt": 0}}}]
    ranges = body["aggs"]["price"]["aggs"]["ranges"]["range"]["ranges"]
    assert len(ranges) == len(PRICE_RANGES)


def test_the_default_sort_is_relevance_with_text_and_name_without() -> None:
    assert build_query(ProductSearch(q="x"))["sort"] == SORTS["relevance"]
    assert build_query(ProductSearch())["sort"] == SORTS["name"]
    assert build_query(ProductSearch(limit=5))["size"] == 6  # one more: is there a next page


def cursor(sort: str, after: Any) -> str:
    return encode_cursor({"sort": sort, "after": after})


def test_a_cursor_becomes_search_after() -> None:
    body = build_query(ProductSearch(sort="price_asc", cursor=cursor("price_asc", [100, "id-1"])))
    assert body["search_after"] == [100, "id-1"]


@pytest.mark.parametrize(
    ("sort", "after"),
    [
        ("name", [100, "id"]),  # a cursor of another sort
        ("price_asc", [100]),
        ("price_asc", [{"script": "x"}, "id"]),
        ("price_asc", [None, "id"]),
        ("price_asc", [True, "id"]),
        ("price_asc", [100, 7]),
        ("price_asc", [100, "i" * 65]),
        ("price_asc", "100,id"),
    ],
)
def test_a_forged_cursor_is_refused(sort: str, after: Any) -> None:
    with pytest.raises(ProblemError) as refused:
        build_query(ProductSearch(sort="price_asc", cursor=cursor(sort, after)))
    assert (refused.value.status, refused.value.code) == (400, "invalid_cursor")


def test_an_inverted_price_range_is_refused() -> None:
    with pytest.raises(ProblemError) as refused:
        build_query(ProductSearch(min_price=500, max_price=100))
    assert refused.value.status == 422


class DownSearch:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def search(self, **_: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ConnectionError("connection refused"), 503, "elasticsearch_unavailable"),
        (
            ApiError(
                "search_phase_execution_exception",
                meta=ApiResponseMeta(
                    status=400, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=NODE
                ),
                body={},
            ),
            400,
            "invalid_search",
        ),
        (
            ApiError(
                "es_rejected_execution_exception",
                meta=ApiResponseMeta(
                    status=429, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=NODE
                ),
                body={},
            ),
            503,
            "elasticsearch_unavailable",
        ),
    ],
)
async def test_an_elasticsearch_failure_is_a_problem_never_a_500(
    error: Exception, status: int, code: str
) -> None:
    for call in (
        search_products(DownSearch(error), ProductSearch(q="lamp")),  # type: ignore[arg-type]
        suggest(DownSearch(error), "lam", limit=5),  # type: ignore[arg-type]
    ):
        with pytest.raises(ProblemError) as refused:
            await call
        assert (refused.value.status, refused.value.code) == (status, code)
        if status == 503:
            assert refused.value.extensions == {"dependency": "elasticsearch"}
            assert refused.value.headers == {"Retry-After": "2"}
