"""Pure ASGI rate limiting: a token bucket per client address and one per user,
by route class, in Redis so every instance shares them.

Allowed responses carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` for the tighter bucket; a refusal is 429 problem+json with
``Retry-After`` too. While Redis cannot be reached the limits cannot be
checked, and a request is refused with the 503 of any dependency that is down
(``redis_unavailable``, ``Retry-After``) rather than let through unlimited.
"""

import asyncio
import logging

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenx_common.security.rate_limits import BucketVerdict, Rate, TokenBuckets
from tenx_common.security.tokens import (
    PRINCIPAL_STATE,
    InvalidTokenError,
    KeysUnavailableError,
    Principal,
    TokenVerifier,
)
from tenx_common.settings import RateLimitSettings
from tenx_common.web.admission import EXEMPT, READS
from tenx_common.web.problems import problem_response, unavailable

log = logging.getLogger(__name__)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: RateLimitSettings) -> None:
        self.app = app
        seconds = settings.rate_limit_burst_seconds

        def rate(per_minute: int) -> Rate:
            return Rate(per_minute=per_minute, burst=max(1, per_minute * seconds // 60))

        self.enabled = settings.rate_limit_enabled
        self._buckets: TokenBuckets | None = (
            None  # made on the first request (Redis opens at startup)
        )
        self.rates = {
            ("ip", "read"): rate(settings.rate_limit_ip_read_per_minute),
            ("ip", "write"): rate(settings.rate_limit_ip_write_per_minute),
            ("user", "read"): rate(settings.rate_limit_user_read_per_minute),
            ("user", "write"): rate(settings.rate_limit_user_write_per_minute),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = getattr(scope.get("app"), "state", None)
        wiring = getattr(state, "wiring", None)
        redis = getattr(wiring, "redis", None)
        if scope["type"] != "http" or not self.enabled or redis is None or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        route_class = "read" if scope["method"] in READS else "write"
        if self._buckets is None or self._buckets.redis is not redis:
            self._buckets = TokenBuckets(redis, prefix="ratelimit")
        buckets = self._buckets
        client = scope.get("client")
        subjects = [("ip", client[0] if client else "unknown")]
        verifier: TokenVerifier | None = getattr(wiring, "verifier", None)
        principal = await _signed(scope, verifier)
        if principal is not None:
            subjects.append(("user", str(principal.user_id)))
        # Every bucket in one round trip, while the token's denylist is asked
        # (a revoked token's holder still spends its user's tokens).
        outcomes = await asyncio.gather(
            buckets.take_all(
                [(f"{kind}:{route_class}:{who}", self.rates[(kind, route_class)])
                 for kind, who in subjects]
            ),
            _revoked(principal, verifier),
            return_exceptions=True,
        )  # fmt: skip
        if down := next((o for o in outcomes if isinstance(o, RedisError)), None):
            log.warning("redis unavailable: rate limits cannot be checked: %r", down)
            await unavailable(dependency="redis").response()(scope, receive, send)
            return
        verdicts, revoked = outcomes
        if isinstance(verdicts, BaseException):
            raise verdicts
        if isinstance(revoked, BaseException):
            raise revoked
        if principal is not None and not revoked:
            # The route's CurrentUser reuses this check instead of asking again.
            scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        tightest = min(verdicts, key=lambda v: (v.allowed, v.remaining))
        headers = _headers(tightest)
        if not tightest.allowed:
            log.info("rate limited", extra={"subjects": [kind for kind, _ in subjects]})
            metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
            if metrics is not None:
                refused_by = next(
                    k for v, (k, _) in zip(verdicts, subjects, strict=True) if not v.allowed
                )
                metrics.rate_limited.labels(refused_by, route_class).inc()
            headers["Retry-After"] = str(max(1, tightest.retry_after_s))
            response = problem_response(
                status=429,
                code="rate_limited",
                detail="Too many requests. Slow down and retry after the given time.",
                headers=headers,
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _headers(verdict: BucketVerdict) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(verdict.reset_s),
    }


async def _signed(scope: Scope, verifier: TokenVerifier | None) -> Principal | None:
    """The principal of a bearer token whose signature and claims check out;
    anything else counts by address only (the route says why)."""
    if verifier is None:
        return None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            try:
                return await verifier.signed(token.strip())
            except (InvalidTokenError, KeysUnavailableError):
                return None
    return None


async def _revoked(principal: Principal | None, verifier: TokenVerifier | None) -> bool:
    return principal is not None and verifier is not None and await verifier.revoked(principal)
