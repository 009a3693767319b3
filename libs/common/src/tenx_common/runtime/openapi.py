"""Every service's OpenAPI document says what the service really answers.

FastAPI documents each route's success and a 422 of its own shape; the
services answer every error as ``application/problem+json`` (tenx_common.web.problems),
and any route may meet a missing or refused token, a rate limit, an
oversized body (the edge) or a dependency that is down. This adds those
answers to every operation with one ``Problem`` schema, and documents a
token as optional where a route takes one but does not need it.
"""

from typing import Any, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tenx_common.security.dependencies import OPTIONAL_SCHEME
from tenx_common.web.outages import Dependency

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "dependency": {
            "type": "string",
            "description": "On a 503: the dependency that is down",
            "enum": list(get_args(Dependency)),
        },
    },
}
# A 429 and a 503 say how many seconds to wait (not every 503 does: the edge's own).
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}
}
ERRORS = {
    "400": "The request is malformed",
    "401": "No valid access token",
    "403": "The token does not allow this",
    "404": "Not found (or not the caller's)",
    "405": "The path does not take this method",
    "409": "The request conflicts with the current state",
    "413": "The body is larger than 1 MiB",
    "422": "The request is not valid",
    "429": "Too many requests; see Retry-After",
    "503": "A dependency is unavailable (`dependency` names it); retry after Retry-After",
}


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(
                get_openapi(title=app.title, version=app.version, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    schemes = components.get("securitySchemes", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERRORS.items():
                responses[code] = {"description": description, "content": problem}
                if code in ("429", "503"):
                    responses[code]["headers"] = RETRY_AFTER
            security = operation.get("security", [])
            if any(OPTIONAL_SCHEME in requirement for requirement in security):
                operation["security"] = [{}, {"HTTPBearer": []}]
    if OPTIONAL_SCHEME in schemes:
        del schemes[OPTIONAL_SCHEME]
        schemes.setdefault("HTTPBearer", {"type": "http", "scheme": "bearer"})
    return schema
