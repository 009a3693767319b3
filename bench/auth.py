"""Auth costs: Argon2id verify latency, offline token verifications per second,
and login throughput through the edge.

Run: make bench (the stack must be up). Bounded: 60 hashes, 22,000
verifications, 200 logins, 80 failed logins; loopback only.
"""

import asyncio
import json
import statistics
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bench.edge_overhead import _percentile
from bench.results import write
from tenx_auth.domain.passwords import Passwords
from tenx_common.security.tokens import Jwks, JwksCache, TokenVerifier

EDGE = "http://127.0.0.1:8080"
PASSWORD = "correct horse battery staple 42"  # noqa: S105 (the benchmark user's)


def argon2_verify_ms(rounds: int = 60) -> dict[str, float]:
    passwords = Passwords()
    hashed = passwords.hash(PASSWORD)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert passwords.verify(hashed, PASSWORD)
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "argon2_verify_p50_ms": round(statistics.median(samples), 1),
        "argon2_verify_p95_ms": round(_percentile(samples, 0.95), 1),
    }


async def token_verifications_per_s(
    distinct: int = 2_000, repeats: int = 20_000
) -> dict[str, float]:
    """Offline verification on one core: every token new (signature checked) and
    the same token again (remembered), next to the bare P-256 verify it rests on."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key())) | {"kid": "k1", "alg": "ES256"}

    async def fetch() -> Jwks:
        return {"keys": [jwk]}

    check = TokenVerifier(
        keys=JwksCache(fetch=fetch), issuer="tenx-auth", audience="tenx", denylist=None
    )
    now = int(time.time())
    tokens = [
        jwt.encode(
            {
                "iss": "tenx-auth",
                "aud": "tenx",
                "sub": str(uuid.uuid4()),
                "iat": now,
                "exp": now + 900,
                "jti": uuid.uuid4().hex,
                "roles": ["user"],
            },
            private,
            algorithm="ES256",
            headers={"kid": "k1", "typ": "at+jwt"},
        )
        for _ in range(distinct)
    ]
    started = time.perf_counter()
    for token in tokens:
        await check.verify(token)
    cold = distinct / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(repeats):
        await check.verify(tokens[0])
    warm = repeats / (time.perf_counter() - started)
    data, signature = b"x" * 400, private.sign(b"x" * 400, ec.ECDSA(hashes.SHA256()))
    started = time.perf_counter()
    for _ in range(distinct):
        private.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
    raw = distinct / (time.perf_counter() - started)
    return {
        "token_verifications_per_s_new_tokens": round(cold),
        "token_verifications_per_s_remembered": round(warm),
        "bare_p256_verifications_per_s": round(raw),
        "new_token_to_bare_verify_ratio": round(cold / raw, 2),
    }


async def logins_per_s(total: int = 200, concurrency: int = 4) -> dict[str, float]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as client:
        created = await client.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Bench"}
        )
        created.raise_for_status()
        latencies: list[float] = []
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                response = await client.post(
                    "/v1/auth/token", json={"email": email, "password": PASSWORD}
                )
                response.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "logins_per_s": round(total / elapsed, 1),
        "login_p95_ms": round(_percentile(latencies, 0.95), 1),
    }


async def unknown_vs_wrong_password(accounts: int = 10, tries: int = 4) -> dict[str, float]:
    """Median time of a login with an unknown email over one with a wrong password
    (1.0 means the two cannot be told apart by timing). Sent to auth directly, each
    from its own address, below the per-account limit."""
    emails = [f"bench-{uuid.uuid4().hex[:10]}@example.com" for _ in range(accounts)]
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    async with httpx.AsyncClient(base_url="http://127.0.0.1:8001", timeout=30) as client:
        for email in emails:
            body = {"email": email, "password": PASSWORD, "name": "Bench"}
            (await client.post("/v1/auth/signup", json=body)).raise_for_status()
        for email in emails:
            for _ in range(tries):
                for kind, login in (
                    ("wrong", email),
                    ("unknown", f"x{uuid.uuid4().hex}@example.com"),
                ):
                    address = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
                    started = time.perf_counter()
                    response = await client.post(
                        "/v1/auth/token",
                        json={"email": login, "password": "not the password"},
                        headers={"X-Forwarded-For": address},
                    )
                    timings[kind].append(time.perf_counter() - started)
                    assert response.status_code == 401, response.text
    ratio = statistics.median(timings["unknown"]) / statistics.median(timings["wrong"])
    return {"unknown_to_wrong_password_time_ratio": round(ratio, 2)}


async def main() -> None:
    result: dict[str, float] = {}
    result.update(argon2_verify_ms())
    result.update(await token_verifications_per_s())
    result.update(await logins_per_s())
    result.update(await unknown_vs_wrong_password())
    write("auth", result)


if __name__ == "__main__":
    asyncio.run(main())
