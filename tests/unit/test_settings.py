"""Settings: env prefixes, and no default secrets outside local mode."""

import pytest
from pydantic import ValidationError

from tenx_api.settings import Settings as ApiSettings
from tenx_auth.settings import Settings as AuthSettings
from tenx_notify.settings import Settings as NotifySettings
from tenx_search_indexer.settings import Settings as IndexerSettings


def test_each_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENX_API_PORT", "9100")
    monkeypatch.setenv("TENX_AUTH_PORT", "9101")
    assert ApiSettings().port == 9100
    assert AuthSettings().port == 9101
    assert NotifySettings().port == 8002
    assert IndexerSettings().port == 8003


def test_local_mode_accepts_empty_secrets() -> None:
    settings = AuthSettings(environment="local")
    assert settings.key_encryption_key.get_secret_value() == ""


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ValidationError) as excinfo:
        AuthSettings(environment="production")
    message = str(excinfo.value)
    assert "key_encryption_key" in message
    assert "database_password" in message
    assert "redis_password" in message
    # Optional secrets (unset means unused) are not asked for.
    assert "admin_password" not in message


def test_an_optional_secret_set_empty_is_still_refused() -> None:
    with pytest.raises(ValidationError, match="admin_password"):
        AuthSettings(
            environment="production",
            database_password="db",
            redis_password="r",
            key_encryption_key="k",
            admin_password="",
        )


def test_production_starts_with_real_secrets() -> None:
    settings = ApiSettings(
        environment="production", database_password="s3cret-db", redis_password="s3cret-redis"
    )
    assert settings.primary_url().password == "s3cret-db"


def test_replica_urls_get_the_password() -> None:
    settings = ApiSettings(
        database_password="pw",
        replica_urls=["postgresql+asyncpg://tenx_api@127.0.0.1:5433/tenx_api"],
    )
    [replica] = settings.replica_url_list()
    assert replica.port == 5433
    assert replica.password == "pw"


def test_production_auth_needs_a_key_encryption_key() -> None:
    with pytest.raises(ValidationError, match="key_encryption_key"):
        AuthSettings(
            environment="production",
            database_password="db",
            redis_password="r",
        )


def test_auth_does_not_start_without_its_key_encryption_key() -> None:
    from tenx_auth.bootstrap import key_encryption

    with pytest.raises(RuntimeError, match="TENX_AUTH_KEY_ENCRYPTION_KEY"):
        key_encryption(AuthSettings(environment="local"))
