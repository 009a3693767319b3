"""Integration tests talk to the real local stack (`make up`); its settings come
from the environment that `make test-integration` loads from .state/local.env."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tenx_api.settings import Settings as ApiSettings
from tests.support.stack import EDGE


@pytest.fixture(scope="session")
def api_settings() -> ApiSettings:
    return ApiSettings()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running stack's edge (some modules keep their own, with other timeouts)."""
    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as client:
        yield client
