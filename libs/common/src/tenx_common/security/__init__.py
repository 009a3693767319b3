"""Who may call: access tokens verified offline (``tokens``), the bearer
dependencies ``CurrentUser``/``AdminUser`` that answer 401 and 403
(``dependencies``), Redis counters and token buckets (``rate_limits``) and the
ASGI middleware that applies them per request (``throttle``), and the Fernet
keys of secrets at rest (``encryption``).

Services import from here; the modules import one another directly."""

from tenx_common.security.dependencies import AdminUser, CurrentUser, MaybeUser
from tenx_common.security.encryption import load_fernet
from tenx_common.security.rate_limits import Limit, RateLimiter
from tenx_common.security.tokens import (
    ALGORITHMS,
    TOKEN_TYPE,
    Denylist,
    Jwks,
    JwksCache,
    Principal,
    TokenVerifier,
)

__all__ = [
    "ALGORITHMS",
    "TOKEN_TYPE",
    "AdminUser",
    "CurrentUser",
    "Denylist",
    "Jwks",
    "JwksCache",
    "Limit",
    "MaybeUser",
    "Principal",
    "RateLimiter",
    "TokenVerifier",
    "load_fernet",
]
