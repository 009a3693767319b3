"""Every JSON answer of every service is documented: in each process's
OpenAPI document, each operation whose 2xx content is ``application/json``
names the fields of its body. No schema, an empty one, or an object without
properties (``{"type": "object"}``, a dict that only has
``additionalProperties``) fails: such a route returns an untyped dict.

Only ``application/json`` 2xx content is held to it: a 204 (no content), the
feed's Server-Sent Events (``text/event-stream``) and a 202 without a body
have nothing to describe. Nested free-form values (a notification's ``data``,
a JWK) are allowed: the body around them is typed."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tenx_api.adapters.orm import outbox as api_outbox
from tenx_api.app import create_app as create_api
from tenx_api.settings import Settings as ApiSettings
from tenx_api.worker import create_worker as create_api_worker
from tenx_auth.app import create_app as create_auth
from tenx_auth.settings import Settings as AuthSettings
from tenx_auth.worker import create_worker as create_auth_worker
from tenx_common.runtime.worker import create_relay_app
from tenx_notify.app import create_app as create_notify
from tenx_notify.settings import Settings as NotifySettings
from tenx_notify.worker import create_worker as create_notify_worker
from tenx_search_indexer.app import create_app as create_indexer

PROCESSES: dict[str, Callable[[], FastAPI]] = {
    "api": create_api,
    "api worker": lambda: create_api_worker(ApiSettings()),
    "api relay": lambda: create_relay_app(ApiSettings(), api_outbox),
    "auth": create_auth,
    "auth worker": lambda: create_auth_worker(AuthSettings()),
    "notify": create_notify,
    "notify worker": lambda: create_notify_worker(NotifySettings()),
    "search-indexer": create_indexer,
}
SCALARS = {"string", "integer", "number", "boolean"}
Schema = dict[str, Any]


def untyped(schema: Schema, components: dict[str, Schema]) -> bool:
    """Whether ``schema`` leaves the body's fields unsaid."""
    if "$ref" in schema:
        return untyped(components[schema["$ref"].rsplit("/", 1)[1]], components)
    options = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if options:
        return any(untyped(o, components) for o in options if o.get("type") != "null")
    if schema.get("type") == "array":
        return untyped(schema.get("items", {}), components)
    return schema.get("type") not in SCALARS and not schema.get("properties")


def undocumented(document: Schema) -> list[str]:
    """``METHOD path status`` of each JSON 2xx answer without a typed body."""
    components = document.get("components", {}).get("schemas", {})
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                json = response.get("content", {}).get("application/json")
                if json is None or not code.startswith("2"):
                    continue
                if untyped(json.get("schema", {}), components):
                    found.append(f"{method.upper()} {path} {code}")
    return found


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_every_json_answer_has_a_typed_body(process: str) -> None:
    document = PROCESSES[process]().openapi()
    assert document["paths"]
    assert undocumented(document) == []


def test_an_untyped_answer_is_caught() -> None:
    app = FastAPI()

    @app.get("/dict")
    async def a_dict() -> dict[str, Any]:
        return {}

    @app.get("/list")
    async def a_list() -> list[dict[str, str]]:
        return []

    @app.get("/typed")
    async def typed() -> list[int]:
        return []

    @app.get("/raw")
    async def raw() -> JSONResponse:
        return JSONResponse({})

    @app.delete("/gone", status_code=204)
    async def gone() -> None:
        return None

    assert undocumented(app.openapi()) == ["GET /dict 200", "GET /list 200", "GET /raw 200"]


@pytest.mark.parametrize(
    ("process", "prefix"),
    [("api", "/v1/admin"), ("auth", "/v1/auth/admin"), ("notify", "/v1/notifications/admin")],
)
def test_the_dead_letter_routes_are_in_the_documents(process: str, prefix: str) -> None:
    paths = PROCESSES[process]().openapi()["paths"]
    assert {f"{prefix}/dead-letters", f"{prefix}/dead-letters/{{letter_id}}/redrive"} <= set(paths)
