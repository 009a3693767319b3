"""Product search and type-ahead over the ``products`` index (the
search-indexer keeps it in step with the catalog).

Full text runs over name (weighted) and description with the standard
analyzer, every word required, typos forgiven (fuzziness AUTO: one edit from 3
letters, two from 6), an exact phrase in the name ranked first. The user's
words only ever reach Elasticsearch as the text of match queries, never as
query syntax. Facets are disjunctive: the category counts apply every filter
but the category, the price ranges every filter but the price, so each count
is what choosing that value would return. Pages go by ``search_after`` (the
cursor holds the last hit's sort values), so a deep page costs what the first does.

The default sort is relevance with ``q`` and the name without; ties are broken
by id. A cursor names its sort, and its values are checked (types, lengths,
the same sort) before they reach Elasticsearch. Bad input is a 400 or 422
problem; Elasticsearch down, overloaded (429) or failing (5xx) is 503
``elasticsearch_unavailable`` with ``Retry-After``; no index yet (a fresh
cluster before the indexer ran) is an empty answer.
"""

from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError, TransportError

from tenx_common.data.elasticsearch import PRODUCTS
from tenx_common.web import ProblemError, decode_cursor, encode_cursor, unavailable

SORTS: dict[str, list[dict[str, str]]] = {
    "relevance": [{"_score": "desc"}, {"id": "asc"}],
    "price_asc": [{"price_cents": "asc"}, {"id": "asc"}],
    "price_desc": [{"price_cents": "desc"}, {"id": "asc"}],
    "name": [{"name.sort": "asc"}, {"id": "asc"}],
}
# Price facet buckets, in cents: [from, to).
PRICE_RANGES: list[tuple[int | None, int | None]] = [
    (None, 1_000),
    (1_000, 5_000),
    (5_000, 10_000),
    (10_000, 50_000),
    (50_000, None),
]
FIELDS = ["id", "sku", "name", "description", "category", "price_cents", "currency", "stock"]


@dataclass(frozen=True, slots=True)
class ProductSearch:
    q: str | None = None
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool = False
    sort: str | None = None
    limit: int = 20
    cursor: str | None = None

    @property
    def order(self) -> str:
        return self.sort or ("relevance" if self.q else "name")


def build_query(search: ProductSearch) -> dict[str, Any]:
    """The body of the search request (pure: tested without Elasticsearch)."""
    low, high = search.min_price, search.max_price
    if low is not None and high is not None and low > high:
        raise ProblemError(
            status=422, code="invalid_price_range", detail="min_price is above max_price."
        )
    text: dict[str, Any] = {"match_all": {}}
    if search.q:
        text = {
            "bool": {
                "must": {
                    "multi_match": {
                        "query": search.q,
                        "fields": ["name^3", "description"],
                        "operator": "and",
                        "fuzziness": "AUTO",
                        "prefix_length": 1,
                    }
                },
                "should": {"match_phrase": {"name": {"query": search.q, "boost": 2}}},
            }
        }
    stock = [{"range": {"stock": {"gt": 0}}}] if search.in_stock else []
    category = [{"term": {"category": search.category}}] if search.category else []
    bounds = {
        op: value
        for op, value in (("gte", search.min_price), ("lte", search.max_price))
        if value is not None
    }
    price = [{"range": {"price_cents": bounds}}] if bounds else []
    body: dict[str, Any] = {
        "query": {"bool": {"must": text, "filter": stock}},
        "post_filter": {"bool": {"filter": category + price}},
        "aggs": {
            "category": {
                "filter": {"bool": {"filter": price}},
                "aggs": {"values": {"terms": {"field": "category", "size": 50}}},
            },
            "price": {
                "filter": {"bool": {"filter": category}},
                "aggs": {
                    "ranges": {
                        "range": {
                            "field": "price_cents",
                            "ranges": [_range(low, high) for low, high in PRICE_RANGES],
                        }
                    }
                },
            },
        },
        "sort": SORTS[search.order],
        "size": search.limit + 1,
        "track_total_hits": True,
        "_source": FIELDS,
    }
    if search.cursor is not None:
        body["search_after"] = _after(search.cursor, search.order)
    return body


def _range(low: int | None, high: int | None) -> dict[str, int]:
    return {k: v for k, v in (("from", low), ("to", high)) if v is not None}


def _after(cursor: str, order: str) -> list[Any]:
    def parse(position: dict[str, Any]) -> list[Any]:
        values = position["after"]
        if position["sort"] != order or not isinstance(values, list):
            raise ValueError("a cursor of another sort")
        if len(values) != len(SORTS[order]):
            raise ValueError("wrong length")
        *keys, last_id = values
        if not isinstance(last_id, str) or len(last_id) > 64:
            raise ValueError("bad id")
        for key in keys:
            if isinstance(key, bool) or not isinstance(key, int | float | str):
                raise ValueError("bad sort value")
            if isinstance(key, str) and len(key) > 256:
                raise ValueError("bad sort value")
        return [*keys, last_id]

    return decode_cursor(cursor, parse)


async def search_products(
    es: AsyncElasticsearch, search: ProductSearch, *, index: str = PRODUCTS.alias
) -> dict[str, Any]:
    body = build_query(search)
    try:
        result = await es.search(index=index, **body)
    except NotFoundError:  # no index yet (a fresh cluster before the indexer ran)
        return {
            "total": 0,
            "items": [],
            "facets": {"category": [], "price": []},
            "next_cursor": None,
        }
    except (ApiError, TransportError) as exc:
        raise _unavailable(exc) from exc
    hits = result["hits"]["hits"]
    more = len(hits) > search.limit
    hits = hits[: search.limit]
    next_cursor = encode_cursor({"sort": search.order, "after": hits[-1]["sort"]}) if more else None
    aggs = result["aggregations"]
    return {
        "total": result["hits"]["total"]["value"],
        "items": [hit["_source"] for hit in hits],
        "facets": {
            "category": [
                {"value": b["key"], "count": b["doc_count"]}
                for b in aggs["category"]["values"]["buckets"]
            ],
            "price": [
                {"from": _cents(b.get("from")), "to": _cents(b.get("to")), "count": b["doc_count"]}
                for b in aggs["price"]["ranges"]["buckets"]
            ],
        },
        "next_cursor": next_cursor,
    }


async def suggest(es: AsyncElasticsearch, q: str, *, limit: int) -> dict[str, Any]:
    """Products whose name has a word starting with ``q`` (one typo forgiven
    from four letters on), best first."""
    # Not skip_duplicates: it collapses equal inputs ("lamp" of many lamps).
    completion: dict[str, Any] = {"field": "suggest", "size": limit * 4}
    if len(q) >= 4:
        completion["fuzzy"] = {"fuzziness": 1}
    try:
        result = await es.search(
            index=PRODUCTS.alias,
            suggest={"names": {"prefix": q, "completion": completion}},
            source_includes=["id", "name"],
            size=0,
        )
    except NotFoundError:
        return {"suggestions": []}
    except (ApiError, TransportError) as exc:
        raise _unavailable(exc) from exc
    seen: dict[str, str] = {}
    for option in result["suggest"]["names"][0]["options"]:
        source = option["_source"]
        seen.setdefault(source["id"], source["name"])
    return {"suggestions": [{"id": i, "text": n} for i, n in list(seen.items())[:limit]]}


def _cents(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _unavailable(exc: Exception) -> ProblemError:
    if isinstance(exc, ApiError) and 400 <= exc.status_code < 500 and exc.status_code != 429:
        return ProblemError(status=400, code="invalid_search", detail="The search was refused.")
    return unavailable(dependency="elasticsearch")  # down, overloaded (429) or failing (5xx)
