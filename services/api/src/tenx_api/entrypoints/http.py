"""The api's HTTP routes: each builds a command or query and hands it to a handler."""

import hashlib
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel

from tenx_api.domain.catalog import Category, ProductCreate, ProductUpdate
from tenx_api.service_layer import catalog
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.security import AdminUser, CurrentUser, MaybeUser


def get_deps(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.container.deps
    return deps


Deps = Annotated[ApiDeps, Depends(get_deps)]

router = APIRouter(prefix="/v1")


class Identity(BaseModel):
    user_id: UUID
    roles: list[str]


class ProductPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


@router.get("/me", tags=["customers"], summary="Who the bearer token says the caller is")
async def me(principal: CurrentUser) -> Identity:
    # The customer profile (cache-aside in Redis) joins this with the orders.
    return Identity(user_id=principal.user_id, roles=sorted(principal.roles))


@router.post("/products", status_code=status.HTTP_201_CREATED, tags=["catalog"])
async def create_product(body: ProductCreate, admin: AdminUser, deps: Deps) -> dict[str, Any]:
    return await catalog.create_product(body, client=str(admin.user_id), deps=deps)


@router.patch("/products/{product_id}", tags=["catalog"])
async def update_product(
    product_id: UUID, body: ProductUpdate, admin: AdminUser, deps: Deps
) -> dict[str, Any]:
    return await catalog.update_product(product_id, body, client=str(admin.user_id), deps=deps)


@router.get("/products/{product_id}", tags=["catalog"], response_model=dict[str, Any])
async def get_product(
    product_id: UUID, request: Request, principal: MaybeUser, deps: Deps
) -> Response:
    client = str(principal.user_id) if principal else None
    document = await catalog.get_product(product_id, client=client, deps=deps)
    etag = '"' + hashlib.sha256(document).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=30"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(document, media_type="application/json", headers=headers)


@router.get("/products", tags=["catalog"])
async def list_products(
    principal: MaybeUser,
    deps: Deps,
    category: Annotated[Category | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ProductPage:
    page = await catalog.list_products(
        category=category,
        limit=limit,
        cursor=cursor,
        client=str(principal.user_id) if principal else None,
        deps=deps,
    )
    return ProductPage(items=page.items, next_cursor=page.next_cursor)
