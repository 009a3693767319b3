"""Bearer-token dependencies every service uses: ``CurrentUser``, ``AdminUser``
and ``MaybeUser`` (a token optional, but valid when sent).

A request without a token is 401 ``unauthenticated``; a token that does not
check out is 401 ``invalid_token`` with ``WWW-Authenticate: Bearer
error="invalid_token"``; a missing admin role is 403 ``forbidden``. While no
signing key is known (auth cannot be reached and none was fetched before),
tokens cannot be checked: 503 ``auth_unavailable`` with ``Retry-After``. A
token the rate limiter already verified for the request is not checked again.
"""

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tenx_common.security.tokens import (
    PRINCIPAL_STATE,
    InvalidTokenError,
    KeysUnavailableError,
    Principal,
    TokenVerifier,
)
from tenx_common.web.problems import RETRY_AFTER_S, ProblemError

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/auth/token")
# The same header where a token is optional (the OpenAPI document says so:
# tenx_common.runtime.openapi turns this scheme into "none, or a bearer token").
OPTIONAL_SCHEME = "OptionalBearer"
_optional_bearer = HTTPBearer(auto_error=False, scheme_name=OPTIONAL_SCHEME)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ProblemError(
            status=401,
            code="unauthenticated",
            detail="A bearer access token is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    checked = request.scope.get("state", {}).get(PRINCIPAL_STATE)
    if isinstance(checked, Principal):  # the rate limiter verified this request's token
        return checked
    verifier: TokenVerifier = request.app.state.wiring.verifier
    try:
        return await verifier.verify(credentials.credentials)
    except KeysUnavailableError as exc:
        log.warning("access token not checked: %s", exc)
        raise ProblemError(
            status=503,
            code="auth_unavailable",
            detail="Access tokens cannot be checked right now; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    except InvalidTokenError as exc:
        log.info("access token refused: %s", exc)
        raise ProblemError(
            status=401,
            code="invalid_token",
            detail="The access token is not valid.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentUser) -> Principal:
    if not principal.is_admin:
        raise ProblemError(status=403, code="forbidden", detail="This needs the admin role.")
    return principal


AdminUser = Annotated[Principal, Depends(admin_principal)]


async def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
) -> Principal | None:
    """The caller when a token is sent (and it must then be valid); None when none is."""
    if credentials is None:
        return None
    return await current_principal(request, credentials)


MaybeUser = Annotated[Principal | None, Depends(optional_principal)]
