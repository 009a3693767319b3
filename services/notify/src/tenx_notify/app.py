"""The notify service's FastAPI app."""

from fastapi import FastAPI

from tenx_common.app import create_service_app
from tenx_notify.bootstrap import bootstrap
from tenx_notify.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(settings or Settings(), title="Tenx Notify", bootstrap=bootstrap)
