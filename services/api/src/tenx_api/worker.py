"""The api's worker: the ``api`` consumer (registration and erasure), the
order saga runner and the stock announcer. ``python -m tenx_api worker --port 8004``."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from tenx_api.adapters.orm import dead_letters, inbox, outbox, saga_steps, sagas
from tenx_api.bootstrap import ApiWiring, bootstrap
from tenx_api.service_layer import order_saga, reactions
from tenx_api.service_layer.stock_announcements import StockAnnouncer
from tenx_api.settings import Settings
from tenx_common.messaging import Consumer
from tenx_common.runtime import create_worker_app
from tenx_common.work import SagaRunner

CONSUMER = "api"


def loops(wiring: ApiWiring, tracer: Tracer) -> Sequence[Any]:
    deps = wiring.deps
    engine = deps.sessions.engines.primary
    return [
        Consumer(
            name=CONSUMER,
            settings=deps.settings,
            uow=deps.uow,
            engine=engine,
            inbox=inbox,
            dead_letters=dead_letters,
            handlers=reactions.handlers(deps),
            tracer=tracer,
        ),
        SagaRunner(
            engine=engine,
            uow=deps.uow,
            sagas=sagas,
            steps_log=saga_steps,
            steps=order_saga.steps(deps),
            effects=order_saga.effects(deps),
            lease_s=order_saga.lease_s(deps),
            tracer=tracer,
            poll_interval_s=deps.settings.saga_poll_interval_s,
            listener=deps.sessions.engines.for_listening,
            context=order_saga.load_orders,
        ),
        StockAnnouncer(deps),
    ]


def create_worker(settings: Settings) -> FastAPI:
    return create_worker_app(
        settings, outbox=outbox, title="Tenx API worker", bootstrap=bootstrap, loops=loops
    )
