"""Reindex and backfill with no downtime: a new index is built beside the live
one while writes keep flowing, then the alias moves to it in one atomic step.

    python -m tenx_search_indexer reindex [products] [orders]

with ``TENX_SEARCH_INDEXER_API_TOKEN`` set to an admin's access token.

1. Where the topic ends is noted: every change after this point is replayed
   from Kafka later, so the snapshot may be taken at leisure.
2. A new concrete index is created (no refresh while it fills) and filled
   from the api's admin export (read on the api's primary, so it holds every
   commit whose event came before the noted offsets). The indexer never reads
   another service's tables.
3. The topic is replayed from the noted offsets to its end into the new index.
   Writes carry external versions, so the replay and the snapshot may overlap
   in any order: the newest version of each document wins.
4. The index gets its live settings (refresh interval, replicas) and the alias
   is swapped: readers see the old index, then the new one, never a mix.
5. The live indexer wrote to the old index until the swap: the topic is
   replayed once more, from where step 3 stopped to where it ends now, so
   nothing written just before the swap is missing from the new index.
6. Indices older than the one just replaced are deleted (that one stays, to
   swap back by hand).

The erased users' documents are kept out at every write (``drop_erased``), and
the erasure itself clears every orders index, the new one included. Run one
reindex of an alias at a time.
"""

import asyncio
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from tenx_common.data.elasticsearch import (
    ORDERS,
    PRODUCTS,
    IndexSpec,
    create_index,
    new_index_name,
    swap_alias,
)
from tenx_common.events.catalog_products import TOPIC as PRODUCTS_TOPIC
from tenx_common.events.orders_orders import TOPIC as ORDERS_TOPIC
from tenx_common.messaging import PermanentError, read_envelope, records_of
from tenx_search_indexer.bootstrap import bootstrap
from tenx_search_indexer.domain import Document, from_event, from_export
from tenx_search_indexer.service_layer.deps import IndexerDeps
from tenx_search_indexer.service_layer.indexing import DOCUMENT_EVENTS, bulk_write, drop_erased
from tenx_search_indexer.settings import Settings

log = logging.getLogger(__name__)

SPECS = {PRODUCTS.alias: (PRODUCTS, PRODUCTS_TOPIC), ORDERS.alias: (ORDERS, ORDERS_TOPIC)}
Offsets = dict[TopicPartition, int]


async def reindex(deps: IndexerDeps, alias: str, *, api: httpx.AsyncClient) -> dict[str, Any]:
    """Rebuild ``alias`` (``products`` or ``orders``) as above; what was done."""
    spec, topic = SPECS[alias]
    settings = deps.settings
    started = time.monotonic()
    kafka = AIOKafkaConsumer(  # no group: it is given every partition, and commits nothing
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
    )
    await kafka.start()
    try:
        for _ in range(100):
            if kafka.assignment():
                break
            await asyncio.sleep(0.1)
        partitions = sorted(kafka.assignment())
        noted: Offsets = dict(await kafka.end_offsets(partitions))
        index = new_index_name(spec)
        await create_index(deps.es, spec, index, replicas=0, refresh_interval="-1")
        exported = await backfill(deps, spec, index, api=api)
        positions, replayed = await catch_up(deps, kafka, noted, index)
        await deps.es.indices.put_settings(
            index=index,
            settings={
                "refresh_interval": settings.search_refresh_interval,
                "number_of_replicas": settings.search_replicas,
            },
        )
        await deps.es.indices.refresh(index=index)
        previous = await swap_alias(deps.es, spec, index)
        _, replayed_after_swap = await catch_up(deps, kafka, positions, index)
        deleted = await _delete_older(deps, spec, keep={index, previous})
    finally:
        await kafka.stop()
    return {
        "alias": alias,
        "index": index,
        "previous": previous,
        "exported": exported,
        "replayed": replayed,
        "replayed_after_swap": replayed_after_swap,
        "deleted": deleted,
        "seconds": round(time.monotonic() - started, 1),
    }


async def backfill(
    deps: IndexerDeps, spec: IndexSpec, index: str, *, api: httpx.AsyncClient
) -> int:
    """Every row of the api's export into ``index``; how many."""
    written, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": deps.settings.reindex_page_size}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.get(f"/v1/admin/export/{spec.alias}", params=params)
        response.raise_for_status()
        page = response.json()
        documents = [from_export(spec.alias, row) for row in page["items"]]
        await _write(deps, documents, index)
        written += len(documents)
        cursor = page.get("next_cursor")
        if cursor is None:
            return written


async def catch_up(
    deps: IndexerDeps, kafka: AIOKafkaConsumer, start: Mapping[TopicPartition, int], index: str
) -> tuple[Offsets, int]:
    """The topic from ``start`` to its end now, into ``index``: (where it stopped, how many)."""
    target: Offsets = dict(await kafka.end_offsets(list(start)))
    for partition, offset in start.items():
        kafka.seek(partition, offset)
    positions, replayed = dict(start), 0
    while any(positions[p] < target[p] for p in positions):
        records = records_of(await kafka.getmany(timeout_ms=1000, max_records=2000))
        documents = []
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            if record.offset >= target[partition]:
                continue  # past the end noted: the next catch-up (or the live indexer) has it
            positions[partition] = record.offset + 1
            try:
                envelope = read_envelope(record)
            except PermanentError:
                continue  # the live indexer dead-letters it
            model = DOCUMENT_EVENTS.get(envelope.type)
            if model is not None:
                documents.append(
                    from_event(model.model_validate(envelope.data), occurred_at=envelope.time)
                )
        await _write(deps, documents, index)
        replayed += len(documents)
        for partition in positions:  # a partition read to its end has nothing more
            if positions[partition] < target[partition]:
                positions[partition] = max(positions[partition], await kafka.position(partition))
    return {p: min(positions[p], target[p]) for p in positions}, replayed


async def _write(deps: IndexerDeps, documents: list[Document], index: str) -> None:
    await bulk_write(deps.es, documents, index=index)
    await drop_erased(deps.es, documents, deps.erased, index=index)


async def _delete_older(deps: IndexerDeps, spec: IndexSpec, *, keep: set[str | None]) -> list[str]:
    found = await deps.es.indices.get(index=f"{spec.alias}-*")
    doomed = sorted(name for name in found.body if name not in keep)
    if doomed:
        await deps.es.indices.delete(index=",".join(doomed))
    return doomed


def reindex_command(settings: Settings, args: list[str]) -> None:
    aliases = args or list(SPECS)
    unknown = sorted(set(aliases) - set(SPECS))
    if unknown:
        raise SystemExit(
            f"reindex: unknown index {', '.join(unknown)}; choose from {', '.join(SPECS)}"
        )
    token = settings.api_token.get_secret_value() if settings.api_token is not None else ""
    if not token:
        raise SystemExit("reindex: set TENX_SEARCH_INDEXER_API_TOKEN to an admin's access token")

    async def main() -> None:
        async with (
            bootstrap(settings) as wiring,
            httpx.AsyncClient(
                base_url=settings.api_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as api,
        ):
            for alias in aliases:
                report = await reindex(wiring.deps, alias, api=api)
                sys.stdout.write(json.dumps(report) + "\n")

    asyncio.run(main())
