"""The notify worker: the ``notify`` consumer and the delivery loop.
``python -m tenx_notify worker --port 8006``."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from tenx_common.messaging import Consumer
from tenx_common.runtime import create_worker_app
from tenx_notify.adapters.orm import dead_letters, inbox, outbox
from tenx_notify.bootstrap import NotifyWiring, bootstrap
from tenx_notify.service_layer import reactions
from tenx_notify.service_layer.deliveries import DeliveryRunner
from tenx_notify.settings import Settings

CONSUMER = "notify"


def loops(wiring: NotifyWiring, tracer: Tracer) -> Sequence[Any]:
    deps = wiring.deps
    return [
        Consumer(
            name=CONSUMER,
            settings=deps.settings,
            uow=deps.uow,
            engine=deps.engine,
            inbox=inbox,
            dead_letters=dead_letters,
            handlers=reactions.handlers(deps),
            tracer=tracer,
        ),
        DeliveryRunner(deps, tracer),
    ]


def create_worker(settings: Settings) -> FastAPI:
    return create_worker_app(
        settings, outbox=outbox, title="Tenx Notify worker", bootstrap=bootstrap, loops=loops
    )
