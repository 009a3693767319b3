"""The token verifier every service uses, against the rules of RFC 8725."""

import asyncio
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tenx_common.security.tokens import (
    InvalidTokenError,
    Jwks,
    JwksCache,
    KeysUnavailableError,
    TokenVerifier,
)

ISSUER, AUDIENCE = "tenx-auth", "tenx"


class KeyPair:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.kid = uuid.uuid4().hex
        self.jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update(kid=self.kid, alg="ES256", use="sig")

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
        "roles": ["user"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: KeyPair, payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(
        payload,
        key.private,
        algorithm="ES256",
        headers={"kid": key.kid, "typ": "at+jwt", **headers},
    )


class FakeJwks:
    def __init__(self, *keys: KeyPair) -> None:
        self.keys = list(keys)
        self.fetches = 0

    async def __call__(self) -> Jwks:
        self.fetches += 1
        return {"keys": [key.jwk for key in self.keys]}


class FakeDenylist:
    def __init__(self) -> None:
        self.revoked: set[str] = set()

    async def contains(self, token_id: str) -> bool:
        return token_id in self.revoked


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(jwks: FakeJwks, *, clock: Clock | None = None, denylist: Any = None) -> TokenVerifier:
    cache = JwksCache(fetch=jwks, ttl_s=300, min_refetch_interval_s=10, clock=clock or Clock())
    return TokenVerifier(
        keys=cache, issuer=ISSUER, audience=AUDIENCE, denylist=denylist, leeway_s=0
    )


async def test_a_valid_token_gives_its_principal() -> None:
    key = KeyPair()
    payload = claims(roles=["admin", "user"], sid="session-1")
    principal = await verifier(FakeJwks(key)).verify(sign(key, payload))
    assert str(principal.user_id) == payload["sub"]
    assert principal.is_admin
    assert principal.token_id == payload["jti"]
    assert principal.session_id == "session-1"


@pytest.mark.parametrize(
    ("payload_change", "reason"),
    [
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not yet valid"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "evil"}, "issuer"),
        ({"jti": None}, "jti"),
        ({"exp": None}, "exp"),
        ({"sub": "not-a-uuid"}, "sub"),
        ({"roles": "admin"}, "roles"),
    ],
)
async def test_claims_that_break_the_rules_are_refused(
    payload_change: dict[str, Any], reason: str
) -> None:
    key = KeyPair()
    with pytest.raises(InvalidTokenError, match=f"(?i){reason}"):
        await verifier(FakeJwks(key)).verify(sign(key, claims(**payload_change)))


async def test_alg_none_is_refused() -> None:
    key = KeyPair()
    token = jwt.encode(claims(), "", algorithm="none", headers={"kid": key.kid, "typ": "at+jwt"})
    with pytest.raises(InvalidTokenError, match="algorithm 'none'"):
        await verifier(FakeJwks(key)).verify(token)


async def test_hs256_signed_with_the_public_key_is_refused() -> None:
    # The classic key-confusion attack: HMAC keyed with the published public key.
    key = KeyPair()
    header = {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}
    token = _hmac_token(header, claims(), key.public_pem())
    with pytest.raises(InvalidTokenError, match="algorithm 'HS256'"):
        await verifier(FakeJwks(key)).verify(token)


def _hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_wrong_type_and_missing_kid_are_refused() -> None:
    key = KeyPair()
    with pytest.raises(InvalidTokenError, match="type"):
        await verifier(FakeJwks(key)).verify(sign(key, claims(), typ="JWT"))
    no_kid = jwt.encode(claims(), key.private, algorithm="ES256", headers={"typ": "at+jwt"})
    with pytest.raises(InvalidTokenError, match="no kid"):
        await verifier(FakeJwks(key)).verify(no_kid)


async def test_a_forged_signature_is_refused() -> None:
    key, forger = KeyPair(), KeyPair()
    forged = jwt.encode(
        claims(), forger.private, algorithm="ES256", headers={"kid": key.kid, "typ": "at+jwt"}
    )
    with pytest.raises(InvalidTokenError, match="Signature"):
        await verifier(FakeJwks(key)).verify(forged)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000])
async def test_malformed_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        await verifier(FakeJwks(KeyPair())).verify(garbage)


async def test_unknown_kid_refetches_once_per_interval() -> None:
    old, new = KeyPair(), KeyPair()
    jwks, clock = FakeJwks(old), Clock()
    check = verifier(jwks, clock=clock)
    await check.verify(sign(old, claims()))
    assert jwks.fetches == 1

    jwks.keys.append(new)  # rotated: the next token has a kid we have not seen
    clock.now += 11
    await check.verify(sign(new, claims()))
    assert jwks.fetches == 2

    stranger = KeyPair()
    for _ in range(5):  # unknown kids cannot make us hammer the JWKS endpoint
        with pytest.raises(InvalidTokenError, match="unknown kid"):
            await check.verify(sign(stranger, claims()))
    assert jwks.fetches == 2


async def test_a_token_signed_before_a_rotation_still_verifies() -> None:
    old, new = KeyPair(), KeyPair()
    jwks = FakeJwks(new, old)  # the old key is still published after the rotation
    check = verifier(jwks)
    assert (await check.verify(sign(old, claims()))).roles == frozenset({"user"})
    assert (await check.verify(sign(new, claims()))).roles == frozenset({"user"})


async def test_a_revoked_token_is_refused() -> None:
    key, denylist = KeyPair(), FakeDenylist()
    payload = claims()
    denylist.revoked.add(payload["jti"])
    with pytest.raises(InvalidTokenError, match="revoked"):
        await verifier(FakeJwks(key), denylist=denylist).verify(sign(key, payload))


async def test_a_remembered_token_still_expires_and_can_still_be_revoked() -> None:
    key, denylist = KeyPair(), FakeDenylist()
    now = [time.time()]
    check = TokenVerifier(
        keys=JwksCache(fetch=FakeJwks(key)),
        issuer=ISSUER,
        audience=AUDIENCE,
        denylist=denylist,
        leeway_s=0,
        clock=lambda: now[0],
    )
    payload = claims(exp=int(now[0]) + 5)
    token = sign(key, payload)
    assert (await check.verify(token)).token_id == payload["jti"]
    denylist.revoked.add(payload["jti"])
    with pytest.raises(InvalidTokenError, match="revoked"):
        await check.verify(token)
    denylist.revoked.clear()
    now[0] += 10  # past exp: the remembered result is dropped and the check fails
    with pytest.raises(InvalidTokenError):
        await check.verify(token)


async def test_a_cold_cache_fetches_once_for_many_concurrent_requests() -> None:
    key = KeyPair()
    jwks = FakeJwks(key)

    async def slow_fetch() -> Jwks:
        await asyncio.sleep(0.05)
        return await jwks()

    cache = JwksCache(fetch=slow_fetch, ttl_s=300, min_refetch_interval_s=10, clock=Clock())
    check = TokenVerifier(keys=cache, issuer=ISSUER, audience=AUDIENCE, denylist=None, leeway_s=0)
    token = sign(key, claims())
    principals = await asyncio.gather(*(check.verify(token) for _ in range(200)))
    assert len(principals) == 200
    assert jwks.fetches == 1


async def test_known_keys_outlive_a_failed_refresh_and_none_at_all_is_unavailable() -> None:
    key = KeyPair()
    jwks = FakeJwks(key)
    failing = False

    async def fetch() -> Jwks:
        if failing:
            raise ConnectionError("auth is down")
        return await jwks()

    clock = Clock()
    check = TokenVerifier(
        keys=JwksCache(fetch=fetch, ttl_s=300, min_refetch_interval_s=10, clock=clock),
        issuer=ISSUER,
        audience=AUDIENCE,
        denylist=None,
        leeway_s=0,
    )
    await check.verify(sign(key, claims()))
    failing = True
    clock.now += 301  # stale: a refresh is tried, fails, the known key still serves
    assert (await check.verify(sign(key, claims()))).user_id

    cold = TokenVerifier(
        keys=JwksCache(fetch=fetch, clock=Clock()),
        issuer=ISSUER,
        audience=AUDIENCE,
        denylist=None,
        leeway_s=0,
    )
    with pytest.raises(KeysUnavailableError):
        await cold.verify(sign(key, claims()))
