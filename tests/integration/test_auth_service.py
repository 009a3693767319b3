"""The auth service on the real stack (PostgreSQL, Redis), called on its own
port; the database is read with the service's own role to check what it stored."""

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_auth.bootstrap import bootstrap
from tenx_auth.domain import commands
from tenx_auth.domain.passwords import Passwords
from tenx_auth.service_layer import handlers
from tenx_auth.settings import Settings as AuthSettings
from tenx_common.data.db import primary_engine

AUTH = "http://127.0.0.1:8001"
API = "http://127.0.0.1:8000"
STRONG = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def auth_settings() -> AuthSettings:
    return AuthSettings()


@pytest.fixture
async def auth_db(auth_settings: AuthSettings) -> AsyncIterator[AsyncEngine]:
    engine = primary_engine(auth_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Each test is its own client address, so per-IP limits of one test do not touch another.
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    async with httpx.AsyncClient(
        base_url=AUTH, timeout=10, headers={"X-Forwarded-For": ip}
    ) as http:
        yield http


def admin_password(settings: AuthSettings) -> str:
    assert settings.admin_password is not None, "the local stack sets TENX_AUTH_ADMIN_PASSWORD"
    return settings.admin_password.get_secret_value()


def new_email() -> str:
    return f"it-{uuid.uuid4().hex[:12]}@example.com"


async def sign_up(client: httpx.AsyncClient, email: str, password: str = STRONG) -> dict[str, Any]:
    response = await client.post(
        "/v1/auth/signup", json={"email": email, "password": password, "name": "Ada Tester"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def log_in(client: httpx.AsyncClient, email: str, password: str = STRONG) -> dict[str, Any]:
    response = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def fetch(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def test_sign_up_stores_a_hash_and_an_event_in_one_transaction(
    client: httpx.AsyncClient, auth_db: AsyncEngine
) -> None:
    email = new_email()
    user = await sign_up(client, email.upper())
    assert user["email"] == email
    assert user["roles"] == ["user"]
    assert user["email_verified"] is False
    [(password_hash,)] = await fetch(
        auth_db, "SELECT password_hash FROM users WHERE id = :id", id=user["id"]
    )
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    [(event_type, payload, topic)] = await fetch(
        auth_db, "SELECT type, payload, topic FROM outbox WHERE key = :key", key=user["id"]
    )
    assert event_type == "tenx.auth.user.registered.v1"
    assert topic == "auth.users"
    assert payload["specversion"] == "1.0"
    assert payload["data"]["email"] == email
    token = payload["data"]["verification_token"]
    [(stored,)] = await fetch(
        auth_db, "SELECT token_hash FROM one_time_tokens WHERE user_id = :id", id=user["id"]
    )
    assert len(stored) == 32
    assert token.encode() not in stored  # only the hash is kept


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"email": "not-an-email", "password": STRONG, "name": "A"}, "validation_error"),
        ({"email": "a@example.com", "password": STRONG, "name": "A" * 101}, "validation_error"),
        (
            {"email": "a@example.com", "password": STRONG, "name": "A", "roles": ["admin"]},
            "validation_error",
        ),
        ({"email": "a@example.com", "password": "password123", "name": "A"}, "weak_password"),
        ({"email": "a@example.com", "password": "short", "name": "A"}, "weak_password"),
    ],
)
async def test_bad_sign_up_is_a_problem_and_creates_nothing(
    client: httpx.AsyncClient, auth_db: AsyncEngine, body: dict[str, Any], code: str
) -> None:
    email = new_email()
    body = {**body, "email": body["email"].replace("a@example.com", email)}
    response = await client.post("/v1/auth/signup", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert await fetch(auth_db, "SELECT id FROM users WHERE email = :e", e=email) == []


async def test_malformed_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/signup", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_a_taken_email_is_409(client: httpx.AsyncClient) -> None:
    email = new_email()
    await sign_up(client, email)
    response = await client.post(
        "/v1/auth/signup", json={"email": email, "password": STRONG, "name": "Other"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


async def test_concurrent_sign_ups_with_one_email_make_one_user(
    client: httpx.AsyncClient, auth_db: AsyncEngine
) -> None:
    email = new_email()
    body = {"email": email, "password": STRONG, "name": "Racer"}
    responses = await asyncio.gather(*(client.post("/v1/auth/signup", json=body) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert len(await fetch(auth_db, "SELECT id FROM users WHERE email = :e", e=email)) == 1


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await sign_up(client, email)
    wrong = await client.post("/v1/auth/token", json={"email": email, "password": "nope nope"})
    unknown = await client.post(
        "/v1/auth/token", json={"email": new_email(), "password": "nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = {"request_id"}
    assert {k: v for k, v in wrong.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }


async def test_repeated_failures_lock_the_account_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await sign_up(client, email)
    for _ in range(5):
        response = await client.post("/v1/auth/token", json={"email": email, "password": "bad"})
        assert response.status_code == 401
    locked = await client.post("/v1/auth/token", json={"email": email, "password": STRONG})
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"
    assert 0 < int(locked.headers["retry-after"]) <= 900


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    email = new_email()
    await sign_up(client, email)
    first = await log_in(client, email)
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == 900
    second = (
        await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    assert second["refresh_token"] != first["refresh_token"]

    reused = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    # The thief's reuse revoked the family: the legitimate newest token is dead too.
    after = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401
    # Another login is a family of its own and unaffected.
    other = await log_in(client, email)
    ok = await client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert ok.status_code == 200


async def test_logout_stops_the_token_in_every_service(client: httpx.AsyncClient) -> None:
    email = new_email()
    await sign_up(client, email)
    tokens = await log_in(client, email)
    headers = bearer(tokens["access_token"])
    async with httpx.AsyncClient(base_url=API, timeout=10) as api:
        assert (await client.get("/v1/auth/me", headers=headers)).status_code == 200
        assert (await api.get("/v1/me", headers=headers)).status_code == 200
        assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204
        me = await client.get("/v1/auth/me", headers=headers)
        assert me.status_code == 401
        assert me.json()["code"] == "invalid_token"
        assert (await api.get("/v1/me", headers=headers)).status_code == 401
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_email_verification_is_single_use(
    client: httpx.AsyncClient, auth_db: AsyncEngine
) -> None:
    email = new_email()
    user = await sign_up(client, email)
    [(payload,)] = await fetch(auth_db, "SELECT payload FROM outbox WHERE key = :k", k=user["id"])
    token = payload["data"]["verification_token"]
    assert (await client.post("/v1/auth/verify-email", json={"token": token})).status_code == 204
    again = await client.post("/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"
    me = await client.get(
        "/v1/auth/me", headers=bearer((await log_in(client, email))["access_token"])
    )
    assert me.json()["email_verified"] is True
    types = await fetch(
        auth_db, "SELECT type FROM outbox WHERE key = :k ORDER BY occurred_at", k=user["id"]
    )
    assert [t for (t,) in types] == [
        "tenx.auth.user.registered.v1",
        "tenx.auth.user.email_verified.v1",
    ]


async def test_password_reset(client: httpx.AsyncClient, auth_db: AsyncEngine) -> None:
    email = new_email()
    user = await sign_up(client, email)
    old_session = await log_in(client, email)
    unknown = await client.post("/v1/auth/password-reset", json={"email": new_email()})
    known = await client.post("/v1/auth/password-reset", json={"email": email})
    assert unknown.status_code == known.status_code == 202
    rows = await fetch(
        auth_db,
        "SELECT payload FROM outbox WHERE key = :k AND type = :t",
        k=user["id"],
        t="tenx.auth.user.password_reset_requested.v1",
    )
    token = rows[0][0]["data"]["reset_token"]
    weak = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "password1"}
    )
    assert weak.status_code == 422
    new_password = "a brand new passphrase 99"
    done = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204
    old = await client.post("/v1/auth/token", json={"email": email, "password": STRONG})
    assert old.status_code == 401
    await log_in(client, email, new_password)
    stale = await client.post(
        "/v1/auth/refresh", json={"refresh_token": old_session["refresh_token"]}
    )
    assert stale.status_code == 401


async def test_key_rotation_keeps_old_tokens_valid(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    admin = await log_in(client, auth_settings.admin_email, admin_password(auth_settings))
    before = admin["access_token"]
    user_email = new_email()
    await sign_up(client, user_email)
    user = await log_in(client, user_email)
    refused = await client.post("/v1/auth/keys/rotate", headers=bearer(user["access_token"]))
    assert refused.status_code == 403

    rotated = await client.post("/v1/auth/keys/rotate", headers=bearer(before))
    assert rotated.status_code == 201
    new_kid = rotated.json()["kid"]
    kids = [key["kid"] for key in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert new_kid in kids
    assert len(kids) >= 2

    async with httpx.AsyncClient(base_url=API, timeout=10) as api:
        # A token signed before the rotation still works everywhere...
        assert (await client.get("/v1/auth/me", headers=bearer(before))).status_code == 200
        assert (await api.get("/v1/me", headers=bearer(before))).status_code == 200
        # ...the new key is published before it signs, and once it signs, its
        # tokens are accepted by the api too.
        async with asyncio.timeout(60):
            while True:
                after = (await log_in(client, user_email))["access_token"]
                if jwt.get_unverified_header(after)["kid"] == new_kid:
                    break
                await asyncio.sleep(1)
        assert (await api.get("/v1/me", headers=bearer(after))).status_code == 200
        assert (await api.get("/v1/me", headers=bearer(before))).status_code == 200


async def test_jwks_publishes_only_asymmetric_public_keys(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "EC"
        assert key["alg"] == "ES256"
        assert key["kid"]
        assert "d" not in key  # no private part


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "Bearer", "x" * 4000],
)
async def test_malformed_tokens_are_401_problems(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/v1/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_local_admin_exists_with_the_admin_role(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    admin = await log_in(client, auth_settings.admin_email, admin_password(auth_settings))
    me = (await client.get("/v1/auth/me", headers=bearer(admin["access_token"]))).json()
    assert me["roles"] == ["admin", "user"]
    assert me["email_verified"] is True


async def test_many_failures_from_one_address_are_limited_across_accounts(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    # Fewer than the per-account limit on each account, more than the per-IP limit in all.
    per_account = auth_settings.login_failures_per_account - 1
    accounts = auth_settings.login_failures_per_ip // per_account + 1
    statuses = []
    for _ in range(accounts):
        email = new_email()
        for _ in range(per_account):
            response = await client.post("/v1/auth/token", json={"email": email, "password": "x"})
            statuses.append(response.status_code)
    assert statuses.count(401) == auth_settings.login_failures_per_ip
    assert set(statuses[auth_settings.login_failures_per_ip :]) == {429}


async def test_account_deletion_is_requested_once_and_ends_every_session(
    client: httpx.AsyncClient, auth_db: AsyncEngine
) -> None:
    email = new_email()
    user = await sign_up(client, email)
    tokens = await log_in(client, email)
    other = await log_in(client, email)
    requested = await client.delete("/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert requested.status_code == 202
    deletion = requested.json()
    assert deletion["status"] == "requested"

    [(payload,)] = await fetch(
        auth_db,
        "SELECT payload FROM outbox WHERE key = :k AND type = :t",
        k=user["id"],
        t="tenx.auth.user.account_deletion_requested.v1",
    )
    assert payload["data"]["deletion_id"] == deletion["deletion_id"]

    # The token that asked is revoked, every refresh token too, and the password no longer logs in.
    assert (
        await client.get("/v1/auth/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401
    stale = await client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert stale.status_code == 401
    login = await client.post("/v1/auth/token", json={"email": email, "password": STRONG})
    assert login.status_code == 401

    # Its status is visible to the owner's other live token and to nobody else.
    path = f"/v1/auth/deletions/{deletion['deletion_id']}"
    mine = await client.get(path, headers=bearer(other["access_token"]))
    assert mine.status_code == 200
    assert mine.json()["status"] in {"requested", "completed"}  # the saga may be done already
    stranger_email = new_email()
    await sign_up(client, stranger_email)
    stranger = await log_in(client, stranger_email)
    assert (await client.get(path, headers=bearer(stranger["access_token"]))).status_code == 404


class HeldPasswords(Passwords):
    """The real argon2 check, held in its thread until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.checking = threading.Event()
        self.release = threading.Event()

    def verify(self, password_hash: str | None, password: str) -> bool:
        self.checking.set()
        self.release.wait(10)
        return super().verify(password_hash, password)


async def test_a_login_holds_no_database_connection_while_it_checks_the_password(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    # A burst of logins, each 20-50 ms of argon2, once held every pooled
    # connection through its check; the rest timed out on the pool (503).
    email = new_email()
    await sign_up(client, email)
    passwords = HeldPasswords()
    async with bootstrap(auth_settings) as container:
        assert container.infra.engines is not None
        pool = container.infra.engines.primary.pool
        deps = dataclasses.replace(container.deps, passwords=passwords)
        login = asyncio.create_task(
            handlers.log_in(
                commands.LogIn(email=email, password=STRONG), client_ip="10.250.0.1", deps=deps
            )
        )
        try:
            assert await asyncio.to_thread(passwords.checking.wait, 10)
            held = pool.checkedout()  # type: ignore[attr-defined]
        finally:
            passwords.release.set()
        pair = await login
    assert held == 0
    assert pair.access_token
