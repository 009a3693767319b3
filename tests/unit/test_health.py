"""Liveness always answers; readiness names each dependency that is down."""

import asyncio

from fastapi.testclient import TestClient

from tenx_common.runtime.app import create_service_app
from tenx_common.web.health import Check
from tests.unit.conftest import FakeSettings, down, fake_bootstrap, up


async def hangs() -> None:
    await asyncio.sleep(30)


def test_healthz_is_ok_even_when_dependencies_are_down(settings: FakeSettings) -> None:
    app = create_service_app(
        settings, title="fake", bootstrap=fake_bootstrap([Check("postgres", down)])
    )
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_every_check_passes(settings: FakeSettings) -> None:
    checks = [Check("postgres", up), Check("redis", up)]
    app = create_service_app(settings, title="fake", bootstrap=fake_bootstrap(checks))
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "up", "redis": "up"}}


def test_readyz_is_503_problem_naming_what_is_down(settings: FakeSettings) -> None:
    checks = [Check("postgres", up), Check("kafka", down), Check("redis", hangs)]
    app = create_service_app(settings, title="fake", bootstrap=fake_bootstrap(checks))
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["detail"] == "Dependencies down: kafka, redis"
    assert body["checks"] == {"postgres": "up", "kafka": "down", "redis": "down"}
