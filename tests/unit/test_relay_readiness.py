"""An outbox relay is not ready while its batches fail (the database went away
after it connected): its /readyz says so."""

import asyncio
import contextlib
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracer
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from tenx_common.data.outbox import outbox_table
from tenx_common.messaging.relay import Relay, _sampled
from tenx_common.settings import KafkaSettings, PostgresSettings, RelaySettings, ServiceSettings
from tests.unit.conftest import CLOSED


class RelayedSettings(PostgresSettings, KafkaSettings, RelaySettings, ServiceSettings):
    service_name: str = "fake"
    tracing_enabled: bool = False


async def test_a_relay_whose_batches_fail_is_not_ready() -> None:
    relay = Relay(RelayedSettings(), outbox_table(MetaData()))
    relay.connected = True  # it had connected; then the database went away
    engine = create_async_engine(f"postgresql+asyncpg://x@{CLOSED}/x")
    producer: Any = None  # never reached: the batch fails on the database first
    loop = asyncio.create_task(relay._loop(engine, producer, NoOpTracer()))
    try:
        await asyncio.sleep(0.1)
        assert not relay.connected
        with pytest.raises(ConnectionError, match="not connected"):
            await relay.check()
    finally:
        loop.cancel()  # it naps a second after a failed batch
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await engine.dispose()


def test_a_stored_trace_context_is_sampled_only_when_its_flags_say_so() -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert _sampled({"traceparent": f"00-{trace_id}-{span_id}-01"})
    assert _sampled({"traceparent": f"00-{trace_id}-{span_id}-03"})  # other flags beside
    assert not _sampled({"traceparent": f"00-{trace_id}-{span_id}-00"})
    assert not _sampled({"traceparent": f"00-{'0' * 32}-{span_id}-01"})  # an invalid trace id
    assert not _sampled({"traceparent": "garbage"})
    assert not _sampled({})
