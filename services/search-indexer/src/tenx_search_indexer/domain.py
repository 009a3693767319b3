"""What a search document is: built from an event or from the api's export,
the same way, so a reindexed document equals the one the events built.

Each document carries the aggregate's version, and Elasticsearch stores it as
an external version: a write with a version not above the stored one is
refused (409), so a duplicate or late event never takes a document back. A
product's version is its row's; an order's is its status's rank, since an
order only ever moves forward (pending, then confirmed, then cancelled, or
pending straight to cancelled).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenx_common.data.elasticsearch import ORDERS, PRODUCTS
from tenx_common.events.catalog_products import ProductCreated
from tenx_common.events.orders_orders import (
    OrderConfirmed,
    OrderEvent,
    OrderPlaced,
)

ORDER_VERSIONS = {"pending": 1, "confirmed": 2, "cancelled": 3}
_PRODUCT_FIELDS = ("sku", "name", "description", "category", "price_cents", "currency", "stock")


@dataclass(frozen=True, slots=True)
class Document:
    index: str  # the alias, or a concrete index while a reindex builds it
    id: str
    version: int
    source: dict[str, Any]
    user_id: str | None = None  # whose document it is, when it is a person's


def suggestions(name: str) -> list[str]:
    """The completion inputs of a name: the name from each of its words on."""
    words = name.split()
    return [" ".join(words[i:]) for i in range(min(len(words), 8))] or [name]


def product_document(fields: Mapping[str, Any], *, updated_at: str | None) -> Document:
    """From a catalog event's data or an exported product (both carry the whole product)."""
    product_id = str(fields.get("product_id") or fields["id"])
    source = {name: fields[name] for name in _PRODUCT_FIELDS}
    source |= {
        "id": product_id,
        "version": int(fields["version"]),
        "updated_at": updated_at,
        "suggest": {"input": suggestions(str(fields["name"]))},
    }
    return Document(PRODUCTS.alias, product_id, int(fields["version"]), source)


def order_document(
    *,
    order_id: str,
    user_id: str,
    status: str,
    total_cents: int | None,
    currency: str | None,
    updated_at: str | None,
) -> Document:
    version = ORDER_VERSIONS[status]
    source = {
        "id": order_id,
        "user_id": user_id,
        "status": status,
        "total_cents": total_cents,
        "currency": currency,
        "version": version,
        "updated_at": updated_at,
    }
    return Document(ORDERS.alias, order_id, version, source, user_id=user_id)


def from_event(
    event: Any, *, occurred_at: str | None, data: Mapping[str, Any] | None = None
) -> Document:
    """``data``: the event's JSON as received, when the event was validated from it."""
    if isinstance(event, ProductCreated):  # also ProductUpdated and StockChanged (v2)
        fields = data if data is not None else event.model_dump(mode="json")
        return product_document(fields, updated_at=occurred_at)
    assert isinstance(event, OrderEvent), type(event)
    status = (
        "pending"
        if isinstance(event, OrderPlaced)
        else "confirmed"
        if isinstance(event, OrderConfirmed)
        else "cancelled"
    )
    total = getattr(event, "total_cents", None)
    currency = getattr(event, "currency", None)
    return order_document(
        order_id=str(event.order_id),
        user_id=str(event.user_id),
        status=status,
        total_cents=total,
        currency=currency,
        updated_at=occurred_at,
    )


def from_export(kind: str, row: Mapping[str, Any]) -> Document:
    """A document from one row of the api's admin export (``products`` or ``orders``)."""
    if kind == PRODUCTS.alias:
        return product_document(row, updated_at=row["updated_at"])
    return order_document(
        order_id=str(row["id"]),
        user_id=str(row["user_id"]),
        status=str(row["status"]),
        total_cents=row["total_cents"],
        currency=row["currency"],
        updated_at=row["updated_at"],
    )
