"""The notify service's FastAPI app."""

from fastapi import FastAPI

from tenx_common.messaging import dead_letter_router
from tenx_common.runtime import create_service_app
from tenx_notify.adapters.orm import dead_letters
from tenx_notify.bootstrap import bootstrap
from tenx_notify.entrypoints.http import router
from tenx_notify.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Tenx Notify",
        bootstrap=bootstrap,
        routers=[router, dead_letter_router("/v1/notifications/admin", dead_letters)],
    )
