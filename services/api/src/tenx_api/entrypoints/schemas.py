"""What the api's HTTP routes return.

Each model has exactly the fields its service-layer function writes: FastAPI
keeps only a model's fields, so a field missing here would vanish from the
answer. Ids the handlers write as strings are typed ``UUID`` (they read back
the same), times ``Timestamp`` (see ``tenx_common.web.timestamps``)."""

from uuid import UUID

from pydantic import BaseModel, Field

from tenx_api.domain.customers import Address
from tenx_api.domain.orders import OrderStatus
from tenx_common.web import Page, Timestamp
from tenx_common.work import SagaStatus


class ProductPublic(BaseModel):
    id: UUID
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    stock: int
    version: int
    created_at: Timestamp
    updated_at: Timestamp


class ProfilePublic(BaseModel):
    """A customer profile; all empty (``version`` 0) until its first change or
    until the registration fills in the name and email."""

    user_id: UUID
    name: str | None
    email: str | None
    shipping_address: Address | None
    version: int
    updated_at: Timestamp | None


class OrderLinePublic(BaseModel):
    product_id: UUID
    quantity: int
    unit_price_cents: int


class OrderPublic(BaseModel):
    id: UUID
    status: OrderStatus
    items: list[OrderLinePublic]
    total_cents: int
    currency: str
    payment_method: str
    created_at: Timestamp


class OrderExported(BaseModel):
    """An order as the admin export gives it (without its lines)."""

    id: UUID
    user_id: UUID
    status: OrderStatus
    total_cents: int
    currency: str
    created_at: Timestamp
    updated_at: Timestamp


class SagaPublic(BaseModel):
    id: UUID
    kind: str
    status: SagaStatus
    step: str
    attempts: int  # of the current step
    reason: str | None
    last_error: str | None
    next_attempt_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class SagaStepLogged(BaseModel):
    step: str
    attempt: int
    outcome: str
    detail: str | None
    started_at: Timestamp
    finished_at: Timestamp


class SagaWithSteps(SagaPublic):
    steps: list[SagaStepLogged]


class ProductHit(BaseModel):
    """A product as the search index holds it (the id comes last there)."""

    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    stock: int
    id: UUID


class CategoryCount(BaseModel):
    value: str
    count: int


class PriceRangeCount(BaseModel):
    """Products priced in [from, to) cents; an open end is null."""

    from_: int | None = Field(alias="from")
    to: int | None
    count: int


class Facets(BaseModel):
    category: list[CategoryCount]
    price: list[PriceRangeCount]


class SearchResults(BaseModel):
    total: int
    items: list[ProductHit]
    facets: Facets
    next_cursor: str | None


class Suggestion(BaseModel):
    id: UUID
    text: str


class Suggestions(BaseModel):
    suggestions: list[Suggestion]


# The admin export of either kind: a page of products or a page of orders.
Export = Page[ProductPublic] | Page[OrderExported]
