"""The api's HTTP routes."""

from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from tenx_common.security import CurrentUser

router = APIRouter(prefix="/v1", tags=["customers"])


class Identity(BaseModel):
    user_id: UUID
    roles: list[str]


@router.get("/me", summary="Who the bearer token says the caller is")
async def me(principal: CurrentUser) -> Identity:
    # The customer profile (cache-aside in Redis) joins this with the core API.
    return Identity(user_id=principal.user_id, roles=sorted(principal.roles))
