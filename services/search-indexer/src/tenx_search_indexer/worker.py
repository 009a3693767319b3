"""The search-indexer's process: the ``search-indexer`` consumer, with /healthz,
/readyz and /metrics. ``python -m tenx_search_indexer [serve] --port 8003``
(``worker`` is the same); run as many as the topics have partitions."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from tenx_common.runtime import create_worker_app
from tenx_search_indexer.adapters.orm import dead_letters, inbox, outbox
from tenx_search_indexer.bootstrap import IndexerWiring, bootstrap
from tenx_search_indexer.service_layer import reactions
from tenx_search_indexer.service_layer.indexing import Indexer
from tenx_search_indexer.settings import Settings

CONSUMER = "search-indexer"


def loops(wiring: IndexerWiring, tracer: Tracer) -> Sequence[Any]:
    deps = wiring.deps
    return [
        Indexer(
            es=deps.es,
            erased=deps.erased,
            name=CONSUMER,
            settings=deps.settings,
            uow=deps.uow,
            engine=deps.engine,
            inbox=inbox,
            dead_letters=dead_letters,
            handlers=reactions.handlers(deps),
            tracer=tracer,
            chunk_size=deps.settings.consumer_batch_size,
            linger_s=deps.settings.bulk_linger_s,
        )
    ]


def create_worker(settings: Settings) -> FastAPI:
    return create_worker_app(
        settings,
        outbox=outbox,
        title="Tenx Search Indexer",
        bootstrap=bootstrap,
        loops=loops,
        suffix="",
    )
