"""Unit tests build apps around fakes: a bootstrap that yields fake checks,
and loopback ports for real clients to fail against."""

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from prometheus_client.registry import Collector

from tenx_common.settings import ServiceSettings
from tenx_common.web.health import Check


@dataclass
class FakeWiring:
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
) -> Callable[[FakeSettings], AbstractAsyncContextManager[FakeWiring]]:
    @asynccontextmanager
    async def bootstrap(_: FakeSettings) -> AsyncIterator[FakeWiring]:
        yield FakeWiring(checks=list(checks))

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


# Ports for clients to fail against, on loopback: nothing listens on port 1;
# ``silent`` accepts and never answers (a server that hangs); ``hangs_up``
# accepts and closes at once (a server that goes away).
CLOSED = "127.0.0.1:1"


Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _listening(handle: Connection) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    async def wait_for_the_client_to_give_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read()
        writer.close()

    server, address = await _listening(wait_for_the_client_to_give_up)
    yield address
    server.close()


@pytest.fixture
async def hangs_up() -> AsyncIterator[str]:
    async def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server, address = await _listening(close)
    yield address
    server.close()
