"""Unit tests build apps around fakes: a bootstrap that yields fake checks."""

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from prometheus_client.registry import Collector

from tenx_common.health import Check
from tenx_common.settings import ServiceSettings


@dataclass
class FakeContainer:
    checks: list[Check] = field(default_factory=list)
    collectors: list[Collector] = field(default_factory=list)


class FakeSettings(ServiceSettings):
    service_name: str = "fake"
    tracing_enabled: bool = False
    readiness_timeout_s: float = 0.2


async def up() -> None:
    return None


async def down() -> None:
    raise ConnectionRefusedError("connection refused")


def fake_bootstrap(
    checks: Sequence[Check],
) -> Callable[[FakeSettings], AbstractAsyncContextManager[FakeContainer]]:
    @asynccontextmanager
    async def bootstrap(_: FakeSettings) -> AsyncIterator[FakeContainer]:
        yield FakeContainer(checks=list(checks))

    return bootstrap


@pytest.fixture
def settings() -> FakeSettings:
    return FakeSettings()


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see no stack settings and export no spans (no collector is there)."""
    for name in [name for name in os.environ if name.startswith("TENX_")]:
        monkeypatch.delenv(name)
    for prefix in ("API", "AUTH", "NOTIFY", "SEARCH_INDEXER"):
        monkeypatch.setenv(f"TENX_{prefix}_TRACING_ENABLED", "false")
