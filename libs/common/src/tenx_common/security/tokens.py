"""Access tokens, verified offline by every service (RFC 8725 rules).

The JWS is parsed and checked here, on the hot path of every request: only the
compact form, only ES256 over P-256, no ``crit`` headers, every claim checked.

The verifier accepts only ES256 JWTs of type ``at+jwt`` signed by a key in the
auth service's JWKS, with the expected issuer and audience, not expired and not
yet to come, and whose ``jti`` is not on the logout denylist in Redis. Claims
iss, aud, sub, exp, iat and jti are required, nbf is checked when present, and
times allow ``jwt_leeway_s`` (30 s). The JWKS comes from auth's
``/.well-known/jwks.json`` (``tenx_common.runtime.infra.jwks_verifier``) and is
kept ``jwks_cache_ttl_s`` (5 min); an unknown ``kid`` refetches it, at most once
per ``jwks_min_refetch_interval_s`` (10 s). A token that checked out is
remembered for 60 s at most (never past its exp), so a client's next requests
skip the signature check; the denylist is asked on every request.
"""

import asyncio
import base64
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import ECAlgorithm
from redis.asyncio import Redis

log = logging.getLogger(__name__)

ALGORITHMS = ("ES256",)
TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, RFC 9068)
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
MAX_TOKEN_LENGTH = 8192
# Where a request's verified principal is kept (ASGI scope state) once checked.
PRINCIPAL_STATE = "tenx.principal"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

Jwks = dict[str, Any]


class InvalidTokenError(Exception):
    """The token is not acceptable; the message says why (for logs, not clients)."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: UUID
    roles: frozenset[str]
    token_id: str
    expires_at: int
    session_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class KeysUnavailableError(Exception):
    """No signing keys could be fetched and none are known: tokens cannot be checked."""


class JwksCache:
    """Public keys by ``kid``, fetched through ``fetch`` and kept for ``ttl_s``.

    One fetch at a time, however many requests need the keys at once (a cold
    start under load asks the auth service once). When a refresh fails, the
    keys already known keep serving until a later refresh succeeds.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[], Awaitable[Jwks]],
        ttl_s: float = 300.0,
        min_refetch_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._min_refetch_interval_s = min_refetch_interval_s
        self._clock = clock
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey:
        if not self._keys or self._wants_refresh(kid):
            async with self._lock:  # with no keys yet, wait for a fetch in flight
                if self._wants_refresh(kid):  # not done meanwhile by another request
                    await self._refresh()
        if not self._keys:
            raise KeysUnavailableError("no signing keys yet; the last fetch failed")
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidTokenError(f"unknown kid {kid!r}") from None

    def _wants_refresh(self, kid: str) -> bool:
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < 1.0:
            return False  # at most one attempt a second, failed or not
        stale = self._fetched_at is None or now - self._fetched_at > self._ttl_s
        may_refetch = (
            self._fetched_at is None or now - self._fetched_at >= self._min_refetch_interval_s
        )
        return stale or (kid not in self._keys and may_refetch)

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            jwks = await self._fetch()
        except Exception as exc:
            log.warning("JWKS refresh failed: %r", exc)
            if not self._keys:
                raise KeysUnavailableError(repr(exc)) from exc
            return
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kid") and jwk.get("alg") in ALGORITHMS and jwk.get("use", "sig") == "sig":
                key = ECAlgorithm.from_jwk(jwk)
                if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
                    keys[jwk["kid"]] = key
        self._keys = keys
        self._fetched_at = self._attempted_at


class RevokedTokens(Protocol):
    async def contains(self, token_id: str) -> bool: ...


class Denylist:
    """Token ids revoked before they expire (logout), shared through Redis."""

    PREFIX = "auth:denylist:"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def add(self, token_id: str, *, expires_at: int) -> None:
        ttl = max(1, expires_at - int(time.time()) + 1)
        await self._redis.set(self.PREFIX + token_id, b"1", ex=ttl)

    async def contains(self, token_id: str) -> bool:
        return bool(await self._redis.exists(self.PREFIX + token_id))


class TokenVerifier:
    """Verifies access tokens. A token whose signature and claims checked out is
    remembered (bounded, at most ``cache_s`` and never past its ``exp``), so a
    client's next requests skip the signature check; the denylist is asked every
    time."""

    def __init__(
        self,
        *,
        keys: JwksCache,
        issuer: str,
        audience: str,
        denylist: RevokedTokens | None,
        leeway_s: int = 30,
        cache_size: int = 10_000,
        cache_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._denylist = denylist
        self._leeway_s = leeway_s
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_s = cache_s
        self._clock = clock

    async def verify(self, token: str) -> Principal:
        principal = await self.signed(token)
        if await self.revoked(principal):
            raise InvalidTokenError("token was revoked")
        return principal

    async def signed(self, token: str) -> Principal:
        """The token's principal when its signature and claims check out (the
        denylist not asked: ``verify`` is both)."""
        return self._cached(token) or await self._verify_signed(token)

    async def revoked(self, principal: Principal) -> bool:
        return self._denylist is not None and await self._denylist.contains(principal.token_id)

    def _cached(self, token: str) -> Principal | None:
        entry = self._cache.get(token)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._cache[token]
            return None
        self._cache.move_to_end(token)
        return entry[1]

    def _remember(self, token: str, principal: Principal) -> None:
        until = min(self._clock() + self._cache_s, float(principal.expires_at))
        self._cache[token] = (until, principal)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _verify_signed(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("malformed token: too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidTokenError("malformed token: not three segments")
        header = _json_segment(parts[0])
        if header.get("alg") not in ALGORITHMS:
            raise InvalidTokenError(f"algorithm {header.get('alg')!r} is not allowed")
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidTokenError(f"token type {header.get('typ')!r} is not {TOKEN_TYPE}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidTokenError("token has no kid")
        if "crit" in header:
            raise InvalidTokenError("critical header parameters are not supported")
        key = await self._keys.key(kid)
        _check_signature(key, signing_input=f"{parts[0]}.{parts[1]}", signature=parts[2])
        claims = _json_segment(parts[1])
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise InvalidTokenError(f"missing claim {name!r}")
        if claims["iss"] != self._issuer:
            raise InvalidTokenError("issuer does not match")
        audience = claims["aud"]
        if audience != self._audience and not (
            isinstance(audience, list) and self._audience in audience
        ):
            raise InvalidTokenError("audience does not match")
        self._check_times(claims)
        principal = _principal(claims)
        self._remember(token, principal)
        return principal

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self._leeway_s
        times = {name: claims.get(name) for name in ("exp", "iat", "nbf")}
        for name, value in times.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidTokenError(f"{name} is not a number")
        if claims["exp"] <= now - leeway:
            raise InvalidTokenError("token has expired")
        if claims["iat"] > now + leeway:
            raise InvalidTokenError("token is issued in the future")
        if times["nbf"] is not None and claims["nbf"] > now + leeway:
            raise InvalidTokenError("token is not yet valid")


def _segment(segment: str) -> bytes:
    if not _BASE64URL.fullmatch(segment):
        raise InvalidTokenError("malformed token: not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_segment(segment))
    except ValueError:
        raise InvalidTokenError("malformed token: not JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("malformed token: not a JSON object")
    return value


def _check_signature(key: ec.EllipticCurvePublicKey, *, signing_input: str, signature: str) -> None:
    raw = _segment(signature)
    if len(raw) != 64:  # ES256: r and s, 32 bytes each (RFC 7518, 3.4)
        raise InvalidTokenError("Signature verification failed: wrong length")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise InvalidTokenError("Signature verification failed") from None


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        user_id = UUID(claims["sub"])
    except ValueError:
        raise InvalidTokenError("sub is not a user id") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidTokenError("roles is not a list of strings")
    return Principal(
        user_id=user_id,
        roles=frozenset(roles),
        token_id=str(claims["jti"]),
        expires_at=int(claims["exp"]),
        session_id=claims.get("sid"),
    )
