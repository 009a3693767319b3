"""What a customer sends to place an order, and the statuses an order goes through."""

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator


class OrderStatus(StrEnum):
    """Pending until the payment is authorized; cancelled from either."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: UUID
    quantity: Annotated[int, Field(strict=True, ge=1, le=100)]


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=50)]
    payment_method: Annotated[str, Field(pattern=r"^pm_[A-Za-z0-9_]{1,60}$")]

    @field_validator("items")
    @classmethod
    def _one_line_per_product(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        ids = [item.product_id for item in items]
        if len(set(ids)) != len(ids):
            raise ValueError("each product may appear once; add up its quantity instead")
        return items
