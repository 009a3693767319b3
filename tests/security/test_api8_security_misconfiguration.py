"""API8:2023 Security Misconfiguration: the edge sends security headers on
every answer (the services', and its own errors), answers CORS for an
explicit allow-list of origins only, names no version; the services run
without debug, and an unexpected error is a bare problem with no trace."""

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tenx_api.app import create_app as create_api
from tenx_auth.app import create_app as create_auth
from tenx_notify.app import create_app as create_notify
from tenx_search_indexer.app import create_app as create_indexer
from tests.security.conftest import World

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
ALLOWED_ORIGIN = "http://localhost:3000"


async def test_every_kind_of_answer_carries_the_security_headers(
    edge: httpx.AsyncClient, world: World
) -> None:
    json = {"content-type": "application/json"}
    answers = [
        await edge.get("/v1/products", params={"limit": 1}),  # a service's 200
        await edge.get(f"/v1/orders/{world.order}", headers=world.other),  # a service's 404
        await edge.get("/nowhere"),  # the edge's own 404
        await edge.post("/v1/products", content=b"x" * (1024 * 1024 + 1)),  # the edge's 413
        await edge.post("/v1/auth/token", content=b"{not json", headers=json),  # a 422
    ]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (
                answer.request.url.path,
                answer.status_code,
                name,
            )
        assert answer.headers["server"] == "nginx"  # no version


async def test_cors_answers_an_allowed_origin(edge: httpx.AsyncClient) -> None:
    preflight = await edge.options(
        "/v1/orders",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "idempotency-key", "content-type"):
        assert header in allowed
    assert "access-control-allow-credentials" not in preflight.headers  # bearer tokens, no cookies
    simple = await edge.get("/v1/products", params={"limit": 1}, headers={"Origin": ALLOWED_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in simple.headers["vary"]


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://localhost:3000.evil.example"]
)
async def test_cors_answers_no_other_origin(edge: httpx.AsyncClient, origin: str) -> None:
    preflight = await edge.options(
        "/v1/orders", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    simple = await edge.get("/v1/products", params={"limit": 1}, headers={"Origin": origin})
    for answer in (preflight, simple):
        assert not [h for h in answer.headers if h.startswith("access-control-")], answer.headers


@pytest.mark.parametrize("factory", [create_api, create_auth, create_notify, create_indexer])
def test_no_service_runs_in_debug_mode(factory: type[FastAPI]) -> None:
    assert factory().debug is False


def test_an_unexpected_error_is_a_bare_problem_without_a_trace() -> None:
    app = create_api()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail: password=hunter2 at /srv/app.py line 3")

    answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    for leak in ("hunter2", "Traceback", "RuntimeError", "app.py"):
        assert leak not in answer.text


async def test_a_method_the_api_does_not_have_is_a_problem(edge: httpx.AsyncClient) -> None:
    answer = await edge.request("TRACE", "/v1/products")
    assert answer.status_code in (405, 501)


async def test_a_405_names_every_method_of_the_path(edge: httpx.AsyncClient) -> None:
    # Each method of a path is its own route; the answer names them all.
    answer = await edge.put("/v1/products")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    edge_own = await edge.put("/healthz")
    assert (edge_own.status_code, edge_own.headers["allow"]) == (405, "GET, HEAD")


async def test_a_nul_character_is_refused_before_it_reaches_a_database(
    edge: httpx.AsyncClient, world: World
) -> None:
    sku = f"NUL-{world.order[:8]}"
    body = {
        "sku": sku,
        "name": "a\u0000b",
        "category": "kitchen",
        "price_cents": 1,
        "currency": "EUR",
    }
    made = await edge.post("/v1/products", json=body, headers=world.admin)
    assert made.status_code == 422
    assert made.json()["code"] == "nul_character"
    listed = await edge.get("/v1/products", params={"category": "a\u0000b"})
    assert listed.json()["code"] == "nul_character"
    found = await edge.get("/v1/search/products", params={"q": sku})
    assert sku not in found.text
