"""Every service builds its app from the shared defaults without connecting."""

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tenx_api.app import create_app as create_api
from tenx_auth.app import create_app as create_auth
from tenx_notify.app import create_app as create_notify
from tenx_search_indexer.app import create_app as create_indexer


@pytest.mark.parametrize(
    ("factory", "title"),
    [
        (create_api, "Tenx API"),
        (create_auth, "Tenx Auth"),
        (create_notify, "Tenx Notify"),
        (create_indexer, "Tenx Search Indexer"),
    ],
)
def test_app_factory_builds_without_connecting(factory: type[FastAPI], title: str) -> None:
    app = factory()
    assert app.title == title
    client = TestClient(app)  # no lifespan: the bootstrap never runs
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200
    assert "/readyz" in client.get("/openapi.json").json()["paths"]


def test_readyz_names_dependencies_down_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Point every dependency at a closed port: the app still starts (nothing
    # connects at startup) and readiness names each one that is down.
    monkeypatch.setenv("TENX_NOTIFY_DATABASE_URL", "postgresql+asyncpg://x@127.0.0.1:1/x")
    monkeypatch.setenv("TENX_NOTIFY_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("TENX_NOTIFY_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("TENX_NOTIFY_SMTP_PORT", "1")
    monkeypatch.setenv("TENX_NOTIFY_TRACING_ENABLED", "false")
    monkeypatch.setenv("TENX_NOTIFY_SECRET_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with TestClient(create_notify()) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "postgres": "down",
        "redis": "down",
        "kafka": "down",
        "smtp": "down",
    }


@pytest.mark.parametrize("factory", [create_api, create_auth, create_notify, create_indexer])
def test_every_operation_documents_the_503_of_a_dependency_down(
    factory: type[FastAPI],
) -> None:
    document = TestClient(factory()).get("/openapi.json").json()
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["dependency"]["enum"] == [
        "postgres",
        "redis",
        "kafka",
        "elasticsearch",
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            unavailable = operation["responses"]["503"]
            assert "application/problem+json" in unavailable["content"], (method, path)
            assert "Retry-After" in unavailable["headers"], (method, path)
