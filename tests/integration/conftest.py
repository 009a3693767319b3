"""Integration tests talk to the real local stack (`make up`); its settings come
from the environment that `make test-integration` loads from .state/local.env."""

import uuid

import pytest

from tenx_api.settings import Settings as ApiSettings


@pytest.fixture(scope="session")
def api_settings() -> ApiSettings:
    return ApiSettings()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]
