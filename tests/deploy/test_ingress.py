"""The Ingress routes like the local edge: every path of every service's
OpenAPI document reaches, through each of them, the service that serves it."""

import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI

from tenx_api.app import create_app as create_api
from tenx_auth.app import create_app as create_auth
from tenx_notify.app import create_app as create_notify
from tests.deploy.conftest import ROOT, Object, of_kind

FACTORIES: dict[str, Callable[[], FastAPI]] = {
    "api": create_api,
    "auth": create_auth,
    "notify": create_notify,
}
INTERNAL = {"/healthz", "/readyz", "/metrics"}  # reached by probes and Prometheus, not routed


def public_paths() -> list[tuple[str, str]]:
    """(a request path, the service that serves it) for every public route."""
    found = []
    for service, factory in FACTORIES.items():
        for template in factory().openapi()["paths"]:
            if template not in INTERNAL:
                found.append((re.sub(r"\{[^}]+\}", "x", template), service))
    return found


def edge_route(path: str) -> str | None:
    """The upstream nginx picks (exact locations first, then the longest
    prefix; the edge's regex locations serve /_/ only)."""
    conf = (ROOT / "deploy" / "local" / "nginx" / "nginx.conf").read_text()
    exact: dict[str, str] = {}
    prefix: dict[str, str] = {}
    for modifier, location, upstream in re.findall(
        r"location\s+(=\s+)?(/\S*)\s*\{\s*proxy_pass\s+http://(\w+)", conf
    ):
        (exact if modifier else prefix)[location] = upstream.replace("_", "-")
    if path in exact:
        return exact[path]
    matching = [location for location in prefix if path.startswith(location)]
    return prefix[max(matching, key=len)] if matching else None


def ingress_route(ingresses: list[Object], path: str) -> str | None:
    """The backend Kubernetes picks: an Exact path, else the longest Prefix
    (matched element by element)."""
    best: tuple[int, int, str] | None = None
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            for item in rule["http"]["paths"]:
                location, kind = item["path"], item["pathType"]
                service = item["backend"]["service"]["name"]
                trimmed = location.rstrip("/")
                if kind == "Exact":
                    hit = path == location
                else:
                    hit = path == trimmed or path.startswith(trimmed + "/")
                if hit:
                    rank = (1 if kind == "Exact" else 0, len(trimmed), service)
                    best = max(best, rank) if best else rank
    return best[2] if best else None


@pytest.mark.parametrize("overlay_name", ["kind", "production"])
def test_every_public_path_reaches_its_service_through_edge_and_ingress(
    overlay_name: str,
) -> None:
    from tests.deploy.conftest import render

    ingresses = of_kind(render(overlay_name), "Ingress")
    paths = public_paths()
    assert len(paths) > 30  # every service's routes, not a sample
    wrong = [
        (path, service, edge_route(path), ingress_route(ingresses, path))
        for path, service in paths
        if not edge_route(path) == ingress_route(ingresses, path) == service
    ]
    assert not wrong


def test_paths_no_service_serves_go_nowhere() -> None:
    from tests.deploy.conftest import render

    ingresses = of_kind(render("kind"), "Ingress")
    for path in ("/", "/_/api/readyz", "/metrics", "/v2/orders"):
        assert edge_route(path) is None
        assert ingress_route(ingresses, path) is None
