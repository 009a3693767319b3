"""Signing keys: ES256 pairs kept in the database, private halves encrypted.

The newest active key signs. Rotation adds a key that is published at once but
signs only from ``activates_at``, after every verifier may have refetched the
JWKS; the key it replaces stays published until every token it signed has
expired.

The private halves are encrypted with a Fernet key-encryption key
(``TENX_AUTH_KEY_ENCRYPTION_KEY``: auth does not start without it; the local
stack generates one). A rotation (``POST /v1/auth/keys/rotate``, admin, or
``python -m tenx_auth rotate-key``) publishes the new key at once; it signs
after ``key_activation_delay_s`` (15 s, longer than the verifiers' 10 s limit
on JWKS refetches). The keys it replaces stay published, past that moment, for
the signers' key cache (``signing_key_cache_s``), an access token's life and
the leeway. One instance at a time makes or rotates keys (an advisory lock).
"""

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_auth.adapters.orm import SigningKey
from tenx_common.security import ALGORITHMS, TOKEN_TYPE, Jwks

ALGORITHM = ALGORITHMS[0]
_KEYS_LOCK = 0x7E4E_0001  # advisory lock: one instance at a time makes or rotates keys


def lock_signing_keys() -> ColumnElement[Any]:
    """Held until the transaction ends."""
    return func.pg_advisory_xact_lock(_KEYS_LOCK)


def new_signing_key(fernet: Fernet) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    kid = uuid.uuid4().hex
    public_jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    public_jwk.update(kid=kid, alg=ALGORITHM, use="sig")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(kid=kid, private_key=fernet.encrypt(pem), public_jwk=public_jwk)


async def current_key(session: AsyncSession) -> SigningKey | None:
    result = await session.execute(
        select(SigningKey)
        .where(SigningKey.activates_at <= func.now())
        .order_by(SigningKey.activates_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def next_activation(session: AsyncSession) -> datetime | None:
    result = await session.execute(
        select(func.min(SigningKey.activates_at)).where(SigningKey.activates_at > func.now())
    )
    return result.scalar_one_or_none()


async def rotate(
    session: AsyncSession, fernet: Fernet, *, activation_delay_s: float, retire_after_s: float
) -> SigningKey:
    """Add a key that signs from ``activation_delay_s`` on; the keys it replaces
    stay published ``retire_after_s`` past that moment."""
    await session.execute(select(lock_signing_keys()))
    activates_at = datetime.now(UTC) + timedelta(seconds=activation_delay_s)
    await session.execute(
        update(SigningKey)
        .where(SigningKey.published_until.is_(None))
        .values(published_until=activates_at + timedelta(seconds=retire_after_s))
    )
    key = new_signing_key(fernet)
    key.activates_at = activates_at
    session.add(key)
    await session.flush()
    return key


async def published_jwks(session: AsyncSession) -> Jwks:
    now = datetime.now(UTC)
    result = await session.execute(
        select(SigningKey.public_jwk)
        .where(or_(SigningKey.published_until.is_(None), SigningKey.published_until > now))
        .order_by(SigningKey.created_at.desc())
    )
    return {"keys": list(result.scalars())}


class Signer:
    """Signs with the current key, decrypted once and kept for ``cache_s`` seconds
    (a rotation by another instance is seen within that time)."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        fernet: Fernet,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._fernet = fernet
        self._cache_s = cache_s
        self._clock = clock
        self._cached: tuple[float, str, ec.EllipticCurvePrivateKey] | None = None
        self._valid_until = 0.0

    async def sign(self, claims: dict[str, Any]) -> str:
        kid, private_key = await self._current()
        return jwt.encode(
            claims, private_key, algorithm=ALGORITHM, headers={"kid": kid, "typ": TOKEN_TYPE}
        )

    def forget(self) -> None:
        self._cached = None

    async def _current(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        now = self._clock()
        if self._cached is None or now >= self._valid_until:
            async with self._session_factory() as session:
                key = await current_key(session)
                upcoming = await next_activation(session)
            self._valid_until = now + self._cache_s
            if upcoming is not None:  # switch to the next key the moment it activates
                seconds = (upcoming - datetime.now(UTC)).total_seconds()
                self._valid_until = min(self._valid_until, now + max(0.0, seconds))
            if key is None:
                raise RuntimeError("there is no signing key; the auth bootstrap makes one")
            private_key = serialization.load_pem_private_key(
                self._fernet.decrypt(key.private_key), password=None
            )
            if not isinstance(private_key, ec.EllipticCurvePrivateKey):
                raise TypeError(f"signing key {key.kid} is not an EC key")
            self._cached = (now, key.kid, private_key)
        return self._cached[1], self._cached[2]
