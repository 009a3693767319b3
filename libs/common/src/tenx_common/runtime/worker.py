"""A service's worker process: its consumer and its background loops (a saga
runner; its outbox relay too with ``relay_in_worker``), with the service's
/healthz, /readyz and /metrics on a port of its own; and the relay's own process.
``python -m tenx_<svc> worker --port N``; run as many as wanted."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from opentelemetry.trace import Tracer
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Table

from tenx_common.data.outbox import OutboxMonitor
from tenx_common.loops.periodic import every, repeat, stop_task
from tenx_common.messaging.consumer import Consumer
from tenx_common.messaging.relay import Relay
from tenx_common.observability.telemetry import setup_telemetry
from tenx_common.runtime.app import create_service_app
from tenx_common.runtime.infra import ServiceWiring
from tenx_common.settings import ServiceSettings
from tenx_common.web.health import Check

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)
D = TypeVar("D")

# The loops of a worker, each with run(), stopping and collect() (its metrics).
Loops = Callable[[ServiceWiring[D], Tracer], Sequence[Any]]


def create_worker_app(
    settings: S,
    *,
    title: str,
    bootstrap: Callable[[S], AbstractAsyncContextManager[ServiceWiring[D]]],
    loops: Loops[D],
    outbox: Table | None = None,
    suffix: str = "-worker",
) -> FastAPI:
    relay = (
        Relay(relay_settings(settings), outbox)
        if outbox is not None and getattr(settings, "relay_in_worker", False)
        else None
    )
    # Its spans, logs and metrics are the service's worker's ("api-worker"),
    # unless the worker is the whole service (the search-indexer); a relay
    # it runs keeps its own ("api-relay").
    settings = settings.model_copy(update={"service_name": f"{settings.service_name}{suffix}"})

    @asynccontextmanager
    async def worker(settings: S) -> AsyncIterator[ServiceWiring[D]]:
        telemetry = setup_telemetry(settings)  # the app's own (one per service)
        async with bootstrap(settings) as wiring:
            started = list(loops(wiring, telemetry.tracer("tenx.worker")))
            if outbox is not None:  # a service with an outbox has a database
                started.append(OutboxMonitor(wiring.infra.engines.primary, outbox))
            if relay is not None:
                started.append(relay)
                wiring.infra.checks.append(Check("relay", relay.check))
            wiring.infra.collectors.extend(started)
            tasks = [asyncio.create_task(_keep_running(loop)) for loop in started]
            consumers = [loop for loop in started if isinstance(loop, Consumer)]
            try:
                async with every(3600.0, lambda: _sweep(consumers), name="inbox-sweep"):
                    yield wiring
            finally:
                for loop in started:
                    loop.stopping.set()
                _, pending = await asyncio.wait(tasks, timeout=20) if tasks else (set(), set())
                for task in pending:
                    task.cancel()

    return create_service_app(settings, title=title, bootstrap=worker)


async def _keep_running(loop: Any) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await loop.run()
        except Exception:
            log.exception("worker loop %r ended with an error", loop)


async def _sweep(consumers: Sequence[Consumer]) -> None:
    for consumer in consumers:
        swept = await consumer.sweep_inbox()
        if swept:
            log.info("consumer %s: %d inbox rows past retention deleted", consumer.name, swept)


class Every:
    """A worker loop that runs ``job`` every ``interval_s`` seconds until stopped;
    a failing run is logged and the next one runs on time."""

    def __init__(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.job = job
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await repeat(
            self.job,
            interval_s=self.interval_s,
            stopping=self.stopping,
            what=f"worker job {self.name} failed",
            logger=log,
        )

    def collect(self) -> Iterator[Metric]:
        return iter(())


@dataclass
class RelayWiring:
    """The relay process's wiring: its readiness check and its metrics."""

    relay: Relay

    @property
    def checks(self) -> list[Check]:
        return [Check("relay", self.relay.check)]

    @property
    def collectors(self) -> list[Collector]:
        return [self.relay]


def relay_settings(settings: ServiceSettings) -> ServiceSettings:
    """The service's settings as its relay's: its spans, logs and metrics are
    the relay's ("api-relay"), in its own process or in the worker's."""
    return settings.model_copy(update={"service_name": f"{settings.service_name}-relay"})


def create_relay_app(settings: ServiceSettings, table: Table) -> FastAPI:
    """The ``relay`` command's app: the relay runs in its lifespan, with
    /healthz, /readyz (ready while connected) and /metrics on its port."""
    settings = relay_settings(settings)

    @asynccontextmanager
    async def bootstrap(settings: ServiceSettings) -> AsyncIterator[RelayWiring]:
        relay = Relay(settings, table)
        task = asyncio.create_task(relay.run(), name=f"relay-{table.name}")
        try:
            yield RelayWiring(relay)
        finally:
            relay.stopping.set()
            await stop_task(task, timeout_s=20)

    return create_service_app(settings, title=f"{settings.service_name}", bootstrap=bootstrap)
