"""The deploy layer (make k8s-validate): every overlay of deploy/k8s rendered
by the pinned kustomize, and the images' Dockerfile, checked offline."""

import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("kind", "minikube", "production")
LOCAL_OVERLAYS = ("kind", "minikube")
SERVICES = ("api", "auth", "notify", "search-indexer")

Object = dict[str, Any]


@cache
def versions() -> dict[str, str]:
    """deploy/local/versions.env: NAME=value lines (comments after the value)."""
    found = {}
    for line in (ROOT / "deploy" / "local" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            found[name.strip()] = value.split("#", 1)[0].strip()
    return found


def kustomize() -> Path:
    cache_dir = Path(os.environ.get("TENX_CACHE", "/var/cache/tenx"))
    binary = cache_dir / "bin" / f"kustomize-{versions()['KUSTOMIZE_VERSION']}"
    assert binary.exists(), f"{binary} is missing: make install builds it"
    return binary


@cache
def render(overlay: str) -> tuple[Object, ...]:
    """The overlay's objects, as kustomize builds them (the local overlays'
    secrets are generated first, as the walkthrough does)."""
    if overlay in LOCAL_OVERLAYS:
        subprocess.run([str(K8S / "local-secrets")], check=True, capture_output=True)
    built = subprocess.run(
        [str(kustomize()), "build", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    )
    return tuple(doc for doc in yaml.safe_load_all(built.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(overlay: str) -> tuple[Object, ...]:
    return render(overlay)


def of_kind(objects: tuple[Object, ...], *kinds: str) -> list[Object]:
    return [o for o in objects if o["kind"] in kinds]


def named(objects: tuple[Object, ...], kind: str, name: str) -> Object:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


WORKLOADS = ("Deployment", "StatefulSet", "Job")


def pod_specs(objects: tuple[Object, ...]) -> Iterator[tuple[Object, Object]]:
    """(workload, pod spec) of every Deployment, StatefulSet and Job."""
    for workload in of_kind(objects, *WORKLOADS):
        yield workload, workload["spec"]["template"]["spec"]


def containers(pod: Object) -> list[Object]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def is_ours(container: Object) -> bool:
    return str(container["image"]).startswith("tenx/")
