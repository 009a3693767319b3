"""The auth service's FastAPI app."""

from fastapi import FastAPI

from tenx_auth.adapters.orm import dead_letters
from tenx_auth.bootstrap import bootstrap
from tenx_auth.entrypoints.http import jwks_router, router
from tenx_auth.settings import Settings
from tenx_common.messaging import dead_letter_router
from tenx_common.runtime import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Tenx Auth",
        bootstrap=bootstrap,
        routers=[router, jwks_router, dead_letter_router("/v1/auth/admin", dead_letters)],
    )
