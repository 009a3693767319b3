"""The api service's FastAPI app."""

from fastapi import FastAPI

from tenx_api.adapters.orm import dead_letters
from tenx_api.bootstrap import bootstrap
from tenx_api.entrypoints.http import router
from tenx_api.settings import Settings
from tenx_common.messaging import dead_letter_router
from tenx_common.runtime import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Tenx API",
        bootstrap=bootstrap,
        routers=[router, dead_letter_router("/v1/admin", dead_letters)],
    )
