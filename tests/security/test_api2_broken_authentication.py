"""API2:2023 Broken Authentication: every service refuses an access token that
is unsigned (alg none), signed HS256 with the public key as the secret,
expired, for another audience or issuer, or revoked by logout; a refresh
token works once, and its reuse revokes its whole family."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm
from sqlalchemy.ext.asyncio import async_sessionmaker

from tenx_auth.adapters.keys import Signer
from tenx_auth.settings import Settings as AuthSettings
from tenx_common.data.db import primary_engine
from tests.support.stack import bearer, sign_up

# A route of each service that needs a valid access token.
PROTECTED = ("/v1/me", "/v1/auth/me", "/v1/notifications")


@pytest.fixture(scope="module")
async def signer() -> AsyncIterator[Signer]:
    """auth's own signer, on its database: tokens with the real key, so that
    only the claims can be wrong."""
    settings = AuthSettings()
    engine = primary_engine(settings)
    fernet = Fernet(settings.key_encryption_key.get_secret_value().encode())
    yield Signer(session_factory=async_sessionmaker(engine), fernet=fernet, cache_s=0)
    await engine.dispose()


async def session(edge: httpx.AsyncClient) -> dict[str, Any]:
    return (await sign_up(edge, "owasp-authn"))[1]


def claims_of(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


async def refused_everywhere(edge: httpx.AsyncClient, token: str) -> None:
    for path in PROTECTED:
        response = await edge.get(path, headers=bearer(token))
        assert response.status_code == 401, f"{path} accepted the token: {response.text}"
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_real_token_is_accepted_everywhere(edge: httpx.AsyncClient) -> None:
    token = (await session(edge))["access_token"]
    for path in PROTECTED:
        assert (await edge.get(path, headers=bearer(token))).status_code == 200, path


async def test_an_unsigned_token_is_refused(edge: httpx.AsyncClient) -> None:
    real = (await session(edge))["access_token"]
    header = {k: v for k, v in jwt.get_unverified_header(real).items() if k != "alg"}
    forged = jwt.encode(claims_of(real), "", algorithm="none", headers=header)
    assert jwt.get_unverified_header(forged)["alg"] == "none"
    await refused_everywhere(edge, forged)


async def test_hs256_signed_with_the_public_key_is_refused(edge: httpx.AsyncClient) -> None:
    real = (await session(edge))["access_token"]
    header = jwt.get_unverified_header(real)
    jwks = (await edge.get("/.well-known/jwks.json")).json()
    [key] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    public_key = ECAlgorithm.from_jwk(json.dumps(key))
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    # pyjwt refuses to HMAC with a PEM key; the token is made by hand, as an attacker would.
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in ({**header, "alg": "HS256"}, claims_of(real))
    ]
    signing_input = b".".join(segments)
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    await refused_everywhere(edge, forged)


@pytest.mark.parametrize(
    "change",
    [
        {
            "exp": int(time.time()) - 120,
            "iat": int(time.time()) - 1000,
        },  # expired (past the leeway)
        {"aud": "another-api"},
        {"iss": "https://issuer.example"},
        {"nbf": int(time.time()) + 600},  # not yet valid
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "not-yet-valid"],
)
async def test_a_validly_signed_token_with_a_wrong_claim_is_refused(
    edge: httpx.AsyncClient, signer: Signer, change: dict[str, Any]
) -> None:
    claims = claims_of((await session(edge))["access_token"])
    control = await signer.sign(claims)  # the same claims, signed here: accepted
    assert (await edge.get("/v1/me", headers=bearer(control))).status_code == 200
    await refused_everywhere(edge, await signer.sign(claims | change))


async def test_a_token_revoked_by_logout_is_refused(edge: httpx.AsyncClient) -> None:
    pair = await session(edge)
    out = await edge.post(
        "/v1/auth/logout",
        json={"refresh_token": pair["refresh_token"]},
        headers=bearer(pair["access_token"]),
    )
    assert out.status_code == 204, out.text
    await refused_everywhere(edge, pair["access_token"])


async def test_a_rotated_refresh_token_reused_revokes_its_family(edge: httpx.AsyncClient) -> None:
    first = await session(edge)
    second = await edge.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    reused = await edge.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    after = await edge.post(
        "/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )
    assert after.status_code == 401  # the thief's copy and the user's both die
