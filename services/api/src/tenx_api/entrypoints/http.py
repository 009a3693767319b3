"""The api's HTTP routes: each builds a command or query and hands it to a handler."""

import hashlib
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from opentelemetry import trace

from tenx_api.domain.catalog import Category, ProductCreate, ProductUpdate
from tenx_api.domain.customers import ProfileUpdate
from tenx_api.domain.orders import OrderStatus, PlaceOrder
from tenx_api.entrypoints.schemas import (
    Export,
    OrderExported,
    OrderPublic,
    ProductPublic,
    ProfilePublic,
    SagaPublic,
    SagaWithSteps,
    SearchResults,
    Suggestions,
)
from tenx_api.service_layer import catalog, customers, export, order_saga, orders, search
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.runtime import handler_deps
from tenx_common.security import AdminUser, CurrentUser, MaybeUser
from tenx_common.web import Page, ProblemError
from tenx_common.work import SagaStatus

Deps = Annotated[ApiDeps, Depends(handler_deps)]

router = APIRouter(prefix="/v1")


def cached_json(document: bytes, request: Request, *, cache_control: str) -> Response:
    """A cached JSON document with its ETag; 304 when the client holds it already."""
    etag = '"' + hashlib.sha256(document).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(document, media_type="application/json", headers=headers)


# The hottest route comes first: routes are matched in order. It reads the
# handlers' dependencies straight off the app rather than through Depends,
# which costs a fifth of a cached read.
@router.get("/products/{product_id}", tags=["catalog"], response_model=ProductPublic)
async def get_product(product_id: UUID, request: Request) -> Response:
    deps: ApiDeps = request.app.state.wiring.deps
    anonymous = "authorization" not in request.headers
    document = await catalog.get_product(product_id, deps=deps, anonymous=anonymous)
    return cached_json(document, request, cache_control="public, max-age=30")


@router.get("/me", tags=["customers"], response_model=ProfilePublic)
async def get_profile(principal: CurrentUser, request: Request, deps: Deps) -> Response:
    """The caller's customer profile (cached; revalidate with If-None-Match)."""
    document = await customers.get_profile(principal.user_id, deps=deps)
    return cached_json(document, request, cache_control="private, no-cache")


@router.patch("/me", tags=["customers"], response_model=ProfilePublic)
async def update_profile(body: ProfileUpdate, principal: CurrentUser, deps: Deps) -> Response:
    document = await customers.update_profile(principal.user_id, body, deps=deps)
    return Response(document, media_type="application/json")


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Required; 1 to 255 characters, kept 24 h"),
]


# A JSONResponse: a replay answers with the stored body and Idempotent-Replayed.
@router.post(
    "/orders", status_code=status.HTTP_201_CREATED, tags=["orders"], response_model=OrderPublic
)
async def place_order(
    body: PlaceOrder,
    principal: CurrentUser,
    deps: Deps,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    if not idempotency_key or len(idempotency_key) > 255:
        raise ProblemError(
            status=400,
            code="idempotency_key_required",
            detail="Send an Idempotency-Key header of 1 to 255 characters.",
        )
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    answer = await orders.place_order(
        body, user_id=principal.user_id, key=idempotency_key, request_hash=request_hash, deps=deps
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    if isinstance(answer.body, dict) and "id" in answer.body:  # `make trace ID=<order id>`
        trace.get_current_span().set_attribute("tenx.order_id", str(answer.body["id"]))
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.get("/orders/{order_id}", tags=["orders"])
async def get_order(order_id: UUID, principal: CurrentUser, deps: Deps) -> OrderPublic:
    return OrderPublic.model_validate(await orders.get_order(order_id, principal, deps=deps))


@router.post("/orders/{order_id}/cancel", tags=["orders"])
async def cancel_order(order_id: UUID, principal: CurrentUser, deps: Deps) -> OrderPublic:
    return OrderPublic.model_validate(await orders.cancel_order(order_id, principal, deps=deps))


@router.get("/orders", tags=["orders"])
async def list_orders(
    principal: CurrentUser,
    deps: Deps,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Page[OrderPublic]:
    items, next_cursor = await orders.list_orders(
        principal, status=order_status, limit=limit, cursor=cursor, deps=deps
    )
    return Page[OrderPublic].model_validate({"items": items, "next_cursor": next_cursor})


@router.post("/products", status_code=status.HTTP_201_CREATED, tags=["catalog"])
async def create_product(body: ProductCreate, admin: AdminUser, deps: Deps) -> ProductPublic:
    created = await catalog.create_product(body, client=str(admin.user_id), deps=deps)
    return ProductPublic.model_validate(created)


@router.patch("/products/{product_id}", tags=["catalog"])
async def update_product(
    product_id: UUID, body: ProductUpdate, admin: AdminUser, deps: Deps
) -> ProductPublic:
    updated = await catalog.update_product(product_id, body, client=str(admin.user_id), deps=deps)
    return ProductPublic.model_validate(updated)


@router.get("/products", tags=["catalog"])
async def list_products(
    principal: MaybeUser,
    deps: Deps,
    category: Annotated[Category | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ProductPublic]:
    page = await catalog.list_products(
        category=category,
        limit=limit,
        cursor=cursor,
        client=str(principal.user_id) if principal else None,
        deps=deps,
    )
    return Page[ProductPublic].model_validate(
        {"items": page.items, "next_cursor": page.next_cursor}
    )


@router.get("/admin/sagas", tags=["operations"])
async def list_sagas(
    _: AdminUser,
    deps: Deps,
    saga_status: Annotated[SagaStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Page[SagaPublic]:
    items, next_cursor = await order_saga.list_sagas(
        status=saga_status, limit=limit, cursor=cursor, deps=deps
    )
    return Page[SagaPublic].model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/admin/sagas/{saga_id}", tags=["operations"])
async def get_saga(saga_id: UUID, _: AdminUser, deps: Deps) -> SagaWithSteps:
    return SagaWithSteps.model_validate(await order_saga.get_saga(saga_id, deps=deps))


@router.get("/search/products", tags=["search"])
async def search_products(
    deps: Deps,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    category: Annotated[Category | None, Query()] = None,
    min_price: Annotated[int | None, Query(ge=0, le=100_000_000)] = None,
    max_price: Annotated[int | None, Query(ge=0, le=100_000_000)] = None,
    in_stock: bool = False,
    sort: Literal["relevance", "price_asc", "price_desc", "name"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=600)] = None,
) -> SearchResults:
    found = await search.search_products(
        deps.es,
        search.ProductSearch(
            q=q.strip() or None if q else None,
            category=category,
            min_price=min_price,
            max_price=max_price,
            in_stock=in_stock,
            sort=sort,
            limit=limit,
            cursor=cursor,
        ),
    )
    return SearchResults.model_validate(found)


@router.get("/search/suggest", tags=["search"])
async def suggest(
    deps: Deps,
    q: Annotated[str, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> Suggestions:
    return Suggestions.model_validate(await search.suggest(deps.es, q.strip(), limit=limit))


@router.get("/admin/export/{kind}", tags=["operations"])
async def export_rows(
    kind: Literal["products", "orders"],
    _: AdminUser,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Export:
    page = await export.export(kind, limit=limit, cursor=cursor, deps=deps)
    if kind == "products":
        return Page[ProductPublic].model_validate(page)
    return Page[OrderExported].model_validate(page)
