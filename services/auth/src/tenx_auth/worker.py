"""The auth worker: the ``auth`` consumer (replies of the account-deletion saga)
and the re-requests of missing replies. ``python -m tenx_auth worker --port 8005``."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from tenx_auth.adapters.orm import dead_letters, inbox, outbox
from tenx_auth.bootstrap import AuthWiring, bootstrap
from tenx_auth.service_layer import erasure
from tenx_auth.settings import Settings
from tenx_common.events.privacy_erasure import AccountDataErased
from tenx_common.messaging import Consumer
from tenx_common.runtime import Every, create_worker_app

CONSUMER = "auth"
REREQUEST_CHECK_S = 5.0


def loops(wiring: AuthWiring, tracer: Tracer) -> Sequence[Any]:
    deps = wiring.deps
    return [
        Consumer(
            name=CONSUMER,
            settings=deps.settings,
            uow=deps.uow,
            engine=wiring.infra.engines.primary,
            inbox=inbox,
            dead_letters=dead_letters,
            handlers={
                AccountDataErased: lambda uow, event: erasure.record_reply(uow, event, deps=deps)
            },
            tracer=tracer,
        ),
        Every(
            "deletion-rerequests",
            REREQUEST_CHECK_S,
            lambda: erasure.rerequest_missing(deps=deps),
        ),
    ]


def create_worker(settings: Settings) -> FastAPI:
    return create_worker_app(
        settings, outbox=outbox, title="Tenx Auth worker", bootstrap=bootstrap, loops=loops
    )
