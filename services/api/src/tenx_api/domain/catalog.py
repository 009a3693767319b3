"""What admins send to shape the catalog."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
Category = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
# Strict: JSON true/false or "5" are not numbers here (lax mode would take them).
PriceCents = Annotated[int, Field(strict=True, gt=0, le=100_000_000)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Stock = Annotated[int, Field(strict=True, ge=0, le=1_000_000)]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Sku
    name: Name
    description: Description = ""
    category: Category
    price_cents: PriceCents
    currency: Currency = "EUR"
    stock: Stock = 0


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"minProperties": 1})

    # Absent means unchanged; null is no value any product field can take.
    name: Name | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    category: Category | SkipJsonSchema[None] = None
    price_cents: PriceCents | SkipJsonSchema[None] = None
    currency: Currency | SkipJsonSchema[None] = None
    stock: Stock | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "ProductUpdate":
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(
                f"{', '.join(nulls)}: null is not a value; leave a field out to keep it"
            )
        return self


FIELDS = ("sku", "name", "description", "category", "price_cents", "currency", "stock")


def event_fields(product: Any) -> dict[str, Any]:
    """The whole product (an ORM object or a row), as every catalog event carries it."""
    return {
        "product_id": product.id,
        "version": product.version,
        **{name: getattr(product, name) for name in FIELDS},
    }
