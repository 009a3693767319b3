"""Every variable a workload sets is a setting its process reads, every
setting that must be set in a cluster is, and the service's own settings
accept what the overlay renders (with the secrets the overlay provides)."""

import base64
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tenx_api.settings import Settings as ApiSettings
from tenx_auth.settings import Settings as AuthSettings
from tenx_common.messaging.topics import TopicSettings
from tenx_notify.settings import Settings as NotifySettings
from tenx_search_indexer.settings import Settings as IndexerSettings
from tests.deploy.conftest import Object, containers, is_ours, of_kind, pod_specs
from tests.deploy.dockerfile import image_env

SETTINGS: dict[str, type[BaseSettings]] = {
    "tenx/api": ApiSettings,
    "tenx/auth": AuthSettings,
    "tenx/notify": NotifySettings,
    "tenx/search-indexer": IndexerSettings,
}
# Set where the process is reached through the Ingress only.
BEHIND_THE_INGRESS = {"api", "auth", "notify"}


def settings_of(container: Object) -> type[BaseSettings]:
    if container.get("command", [])[-1:] == ["tenx_common.messaging.topics"]:
        return TopicSettings
    return SETTINGS[container["image"].split(":")[0]]


def service_of(container: Object) -> str:
    """The service whose image the container runs (tenx/<service>:<version>)."""
    return str(container["image"]).split(":")[0].removeprefix("tenx/")


def prefix(settings: type[BaseSettings]) -> str:
    return str(settings.model_config.get("env_prefix", ""))


def required(settings: type[BaseSettings]) -> set[str]:
    """What a cluster must set: the environment, every secret that is not
    optional, and every address whose default is this machine's loopback."""
    names = {"environment"} if "environment" in settings.model_fields else set()
    for name, field in settings.model_fields.items():
        loopback = isinstance(field.default, str) and "127.0.0.1" in field.default
        if field.annotation is SecretStr or loopback:
            names.add(name)
    return names - {"forwarded_allow_ips"}


def secret_values(objects: tuple[Object, ...], name: str) -> dict[str, str]:
    """A Secret's keys and values: generated (local overlays), or the keys an
    ExternalSecret writes, with stand-in values (production)."""
    for obj in objects:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == name:
            return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        if obj["kind"] == "ExternalSecret" and obj["spec"]["target"]["name"] == name:
            template = obj["spec"]["target"].get("template", {}).get("data")
            keys = template or [item["secretKey"] for item in obj["spec"]["data"]]
            stand_in = "from-the-store-" + "x" * 16
            return {key: stand_in for key in keys}
    raise AssertionError(f"no Secret or ExternalSecret makes {name}")


def environment_of(objects: tuple[Object, ...], container: Object) -> dict[str, str]:
    """Every variable the container gets from the manifest, each exactly once."""
    sources: list[dict[str, str]] = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            [config] = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == name]
            sources.append(dict(config.get("data", {})))
        else:
            sources.append(secret_values(objects, source["secretRef"]["name"]))
    sources.append({item["name"]: item.get("value", "") for item in container.get("env", [])})
    merged: dict[str, str] = {}
    for source in sources:
        twice = set(merged) & set(source)
        assert not twice, f"set twice: {sorted(twice)}"
        merged |= source
    return merged


def ours(objects: tuple[Object, ...]) -> list[tuple[str, Object]]:
    return [
        (workload["metadata"]["name"], container)
        for workload, pod in pod_specs(objects)
        for container in containers(pod)
        if is_ours(container)
    ]


def test_every_variable_set_is_a_setting_the_process_reads(objects: tuple[Object, ...]) -> None:
    for workload, container in ours(objects):
        settings = settings_of(container)
        known = {prefix(settings) + name.upper() for name in settings.model_fields}
        unknown = set(environment_of(objects, container)) - known
        assert not unknown, f"{workload}: {sorted(unknown)} are read by nothing"


def test_every_setting_a_cluster_needs_is_set(objects: tuple[Object, ...]) -> None:
    for workload, container in ours(objects):
        settings = settings_of(container)
        given = set(environment_of(objects, container)) | set(image_env(service_of(container)))
        needed = {prefix(settings) + name.upper() for name in required(settings)}
        assert needed <= given, f"{workload} does not set {sorted(needed - given)}"
        if workload in BEHIND_THE_INGRESS:
            assert prefix(settings) + "FORWARDED_ALLOW_IPS" in given, workload


def test_the_services_accept_what_the_overlay_renders(
    objects: tuple[Object, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for workload, container in ours(objects):
        settings = settings_of(container)
        for name in [n for n in os.environ if n.startswith("TENX_")]:
            monkeypatch.delenv(name)
        env = image_env(service_of(container)) | environment_of(objects, container)
        for name, value in env.items():
            if name.startswith("TENX_"):
                monkeypatch.setenv(name, value)
        loaded: Any = settings()  # raises on a bad value, or a default secret outside local
        if hasattr(loaded, "environment"):
            assert loaded.environment in ("staging", "production"), workload
            assert not loaded.is_local, workload


def test_required_settings_are_what_the_services_say() -> None:
    """The rule above, checked on one service: what auth must be given."""
    assert required(AuthSettings) == {
        "environment",
        "host",
        "otlp_endpoint",
        "database_url",
        "database_password",
        "redis_url",
        "redis_password",
        "kafka_bootstrap_servers",
        "key_encryption_key",
    }
