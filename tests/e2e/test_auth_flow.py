"""A user's whole session through the edge: sign up, log in, use the token at
auth and at the api, refresh, reuse the old refresh token, log out."""

import uuid

import httpx

STRONG = "correct horse battery staple 42"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sign_up_to_log_out_through_the_edge(edge: httpx.AsyncClient) -> None:
    email = f"e2e-{uuid.uuid4().hex[:12]}@example.com"
    signed_up = await edge.post(
        "/v1/auth/signup", json={"email": email, "password": STRONG, "name": "Edge User"}
    )
    assert signed_up.status_code == 201, signed_up.text
    user_id = signed_up.json()["id"]

    tokens = (await edge.post("/v1/auth/token", json={"email": email, "password": STRONG})).json()
    access = tokens["access_token"]
    me = await edge.get("/v1/auth/me", headers=bearer(access))
    assert me.status_code == 200
    assert me.json()["id"] == user_id
    api_me = await edge.get("/v1/me", headers=bearer(access))
    assert api_me.status_code == 200
    assert api_me.json()["user_id"] == user_id

    rotated = await edge.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    fresh = rotated.json()

    reused = await edge.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    family_gone = await edge.post(
        "/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
    )
    assert family_gone.status_code == 401

    assert (
        await edge.post("/v1/auth/logout", headers=bearer(fresh["access_token"]))
    ).status_code == 204
    for path in ("/v1/auth/me", "/v1/me"):
        refused = await edge.get(path, headers=bearer(fresh["access_token"]))
        assert refused.status_code == 401, path
        assert refused.headers["content-type"] == "application/problem+json"


async def test_jwks_is_served_at_the_edge(edge: httpx.AsyncClient) -> None:
    response = await edge.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert {key["alg"] for key in response.json()["keys"]} == {"ES256"}
