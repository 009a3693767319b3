"""The search-indexer's FastAPI app: its worker (the indexer and its health and metrics)."""

from fastapi import FastAPI

from tenx_search_indexer.settings import Settings
from tenx_search_indexer.worker import create_worker


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_worker(settings or Settings())
