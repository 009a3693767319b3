"""Events of the ``catalog.products`` topic, keyed by product id. ``version``
grows with every change, so consumers can drop stale or repeated events.

Every event a producer emits carries the whole product as of its version
(event-carried state), so a consumer can keep a copy by replacing it with any
newer event, whatever order the events come in."""

from typing import ClassVar
from uuid import UUID

from tenx_common.events import Event

TOPIC = "catalog.products"


class ProductEvent(Event):
    TOPIC: ClassVar[str] = TOPIC
    product_id: UUID
    version: int

    def aggregate_id(self) -> str:
        return str(self.product_id)


class ProductCreated(ProductEvent):
    TYPE: ClassVar[str] = "tenx.catalog.product.created.v1"
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    stock: int


class ProductUpdated(ProductCreated):
    TYPE: ClassVar[str] = "tenx.catalog.product.updated.v1"


class StockChanged(ProductCreated):
    """The stock moved (an order reserved or released it, or an admin set it)."""

    TYPE: ClassVar[str] = "tenx.catalog.product.stock_changed.v2"


class StockChangedV1(ProductEvent):
    """The first shape, with the stock alone: no longer produced (v2 carries the
    whole product); kept so that old records still read and its schema stays checked."""

    TYPE: ClassVar[str] = "tenx.catalog.product.stock_changed.v1"
    stock: int
