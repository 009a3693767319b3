"""Events of the ``orders.orders`` topic, keyed by order id.

Every order event carries the order's owner, and its total and currency (the
event's type says the status), so that a consumer (the search indexer) can
rebuild the order's document whole from any one of them, whatever order they
arrive in.
"""

from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from tenx_common.events import Event

TOPIC = "orders.orders"


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: UUID
    quantity: int
    unit_price_cents: int


class OrderEvent(Event):
    TOPIC: ClassVar[str] = TOPIC
    order_id: UUID
    user_id: UUID

    def aggregate_id(self) -> str:
        return str(self.order_id)


class OrderPlaced(OrderEvent):
    """Stock is reserved; the order saga authorizes the payment next."""

    TYPE: ClassVar[str] = "tenx.orders.order.placed.v1"
    items: list[OrderLine]
    total_cents: int
    currency: str
    payment_method: str


class OrderConfirmed(OrderEvent):
    """The payment is authorized; the order saga is done."""

    TYPE: ClassVar[str] = "tenx.orders.order.confirmed.v1"
    total_cents: int
    currency: str
    payment_id: str


class OrderCancelled(OrderEvent):
    """The order's stock is released (and its payment voided, when there was one)."""

    TYPE: ClassVar[str] = "tenx.orders.order.cancelled.v1"
    reason: str
    # Added after the first version (so optional); every producer sets them.
    total_cents: int | None = None
    currency: str | None = None
