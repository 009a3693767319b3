"""The auth HTTP API: each route builds a command and hands it to a handler."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status

from tenx_auth.adapters.orm import User
from tenx_auth.domain import commands
from tenx_auth.entrypoints.schemas import (
    DeletionStatus,
    JwkSet,
    KeyRotated,
    TokenResponse,
    UserPublic,
)
from tenx_auth.service_layer import erasure, handlers
from tenx_auth.service_layer.deps import AuthDeps
from tenx_auth.service_layer.handlers import TokenPair
from tenx_common.runtime import handler_deps
from tenx_common.security import AdminUser, CurrentUser

Deps = Annotated[AuthDeps, Depends(handler_deps)]

router = APIRouter(prefix="/v1/auth", tags=["auth"])
jwks_router = APIRouter(tags=["auth"])


def _public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=list(user.roles),
        email_verified=user.email_verified,
    )


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )


@router.post("/signup", status_code=status.HTTP_201_CREATED)
async def sign_up(body: commands.SignUp, deps: Deps) -> UserPublic:
    return _public(await handlers.sign_up(body, deps=deps))


@router.post("/token")
async def issue_token(body: commands.LogIn, request: Request, deps: Deps) -> TokenResponse:
    client_ip = request.client.host if request.client else "unknown"
    return _tokens(await handlers.log_in(body, client_ip=client_ip, deps=deps))


@router.post("/refresh")
async def refresh(body: commands.Refresh, deps: Deps) -> TokenResponse:
    return _tokens(await handlers.refresh(body, deps=deps))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def log_out(principal: CurrentUser, deps: Deps) -> None:
    await handlers.log_out(principal, deps=deps)


@router.get("/me")
async def me(principal: CurrentUser, deps: Deps) -> UserPublic:
    return _public(await handlers.get_user(principal.user_id, deps=deps))


@router.delete("/me", status_code=status.HTTP_202_ACCEPTED)
async def delete_me(principal: CurrentUser, deps: Deps) -> DeletionStatus:
    deletion = await handlers.request_account_deletion(principal, deps=deps)
    return DeletionStatus.model_validate(await erasure.deletion_view(deletion, deps=deps))


@router.get("/deletions/{deletion_id}")
async def deletion_status(deletion_id: UUID, principal: CurrentUser, deps: Deps) -> DeletionStatus:
    deletion = await handlers.get_deletion(deletion_id, principal, deps=deps)
    return DeletionStatus.model_validate(await erasure.deletion_view(deletion, deps=deps))


@router.post("/verify-email", status_code=status.HTTP_204_NO_CONTENT)
async def verify_email(body: commands.VerifyEmail, deps: Deps) -> None:
    await handlers.verify_email(body, deps=deps)


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={202: {"description": "Accepted (whether or not the email is known)"}},
)
async def request_password_reset(body: commands.RequestPasswordReset, deps: Deps) -> Response:
    await handlers.request_password_reset(body, deps=deps)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(body: commands.ResetPassword, deps: Deps) -> None:
    await handlers.reset_password(body, deps=deps)


@router.post("/keys/rotate", status_code=status.HTTP_201_CREATED)
async def rotate_key(_: AdminUser, deps: Deps) -> KeyRotated:
    key = await handlers.rotate_signing_key(deps=deps)
    return KeyRotated(kid=key.kid, activates_at=key.activates_at)


@jwks_router.get("/.well-known/jwks.json")
async def jwks(deps: Deps, response: Response) -> JwkSet:
    response.headers["Cache-Control"] = "public, max-age=60"
    return JwkSet.model_validate(await handlers.published_keys(deps=deps))
