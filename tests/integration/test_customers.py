"""Customer profiles through the edge: made from the registration event, changes
seen at once by their owner on both api instances, ETags, and refused bad input."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.stack import API_PORTS, EDGE, eventually, new_user


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=15) as client:
        yield client


ADDRESS = {"line1": "1 Main St", "city": "Lisbon", "postal_code": "1000-001", "country": "PT"}


async def registered(edge: httpx.AsyncClient, user: dict[str, str]) -> dict[str, Any]:
    """The profile once the registration event has made it (version 1)."""

    async def filled() -> dict[str, Any] | None:
        profile: dict[str, Any] = (await edge.get("/v1/me", headers=user)).json()
        return profile if profile["version"] >= 1 else None

    return await eventually(filled)


async def test_registering_makes_the_profile(edge: httpx.AsyncClient) -> None:
    user = await new_user(edge, "cust")
    profile = await registered(edge, user)
    assert profile["version"] == 1
    assert profile["name"] == "cust"  # as signed up
    assert profile["email"].startswith("cust-")
    assert profile["shipping_address"] is None
    assert uuid.UUID(profile["user_id"])


async def test_a_change_is_seen_at_once_on_both_instances(edge: httpx.AsyncClient) -> None:
    user = await new_user(edge, "cust")
    await registered(edge, user)
    first = await edge.get("/v1/me", headers=user)  # now cached
    etag = first.headers["etag"]
    assert (await edge.get("/v1/me", headers=user | {"If-None-Match": etag})).status_code == 304
    for version in range(1, 6):
        changed = await edge.patch(
            "/v1/me", json={"name": f"Ada {version}", "shipping_address": ADDRESS}, headers=user
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 1 + version
        for port in API_PORTS:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
                seen = (await api.get("/v1/me", headers=user)).json()
            assert seen["name"] == f"Ada {version}", port
            assert seen["shipping_address"] == ADDRESS | {"line2": ""}
    stale = await edge.get("/v1/me", headers=user | {"If-None-Match": etag})
    assert stale.status_code == 200
    assert stale.headers["etag"] != etag


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "A", "roles": ["admin"]},
        {"email": "someone@example.com"},
        {"name": ""},
        {"shipping_address": ADDRESS | {"country": "Portugal"}},
        {"shipping_address": ADDRESS | {"unknown": 1}},
    ],
)
async def test_bad_changes_are_refused_and_change_nothing(
    edge: httpx.AsyncClient, body: dict[str, object]
) -> None:
    user = await new_user(edge, "cust")
    await registered(edge, user)
    await edge.patch("/v1/me", json={"name": "Kept"}, headers=user)
    refused = await edge.patch("/v1/me", json=body, headers=user)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    profile = (await edge.get("/v1/me", headers=user)).json()
    assert (profile["name"], profile["version"]) == ("Kept", 2)
