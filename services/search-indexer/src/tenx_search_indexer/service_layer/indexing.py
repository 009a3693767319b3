"""Documents into Elasticsearch: bulk writes with external versions, the erased
users' documents kept out, and the ``search-indexer`` consumer built on them.

The consumer is the platform's consumer (``tenx_common.messaging.consumer``) with
the document events' effect in Elasticsearch instead of its database, through
its batch handler: the documents of a chunk (up to ``consumer_batch_size``,
gathered for at most ``bulk_linger_s``) become bulk requests, and the offsets
are committed once they succeeded. No inbox is
needed: each write carries the aggregate's version as an external version, so
a redelivered, duplicated or late event is refused by Elasticsearch (counted
``stale``) and never takes a document back. The account-deletion request goes
through the ordinary path (inbox, outbox reply) in the same chunk.

A chunk's documents go as bulk requests of ``SLICE`` (1,000), all sent at once
so that Elasticsearch indexes one while the next is built; two in flight for
one document resolve by version. Elasticsearch down, overloaded (429) or
missing the index (404: an alias mid-swap) raises ``UnavailableError``: nothing
is dead-lettered, and the consumer starts again from its last commit. A
document Elasticsearch refuses (400) is a ``PermanentError``, dead-lettered like
any poison record. Each bulk request is one ``elasticsearch bulk`` span that
links up to 128 of its records' CONSUMER spans (each a child of its
producer's), so one order is one trace across api, relay and search-indexer.
"""

import asyncio
import contextlib
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import orjson
from elasticsearch import ApiError, AsyncElasticsearch, TransportError
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from prometheus_client import Histogram
from prometheus_client.core import Metric

from tenx_common.data.elasticsearch import ORDERS
from tenx_common.events import Event
from tenx_common.events.catalog_products import ProductCreated, ProductUpdated, StockChanged
from tenx_common.events.orders_orders import OrderCancelled, OrderConfirmed, OrderPlaced
from tenx_common.messaging import (
    BatchHandler,
    Consumer,
    Delivery,
    Envelope,
    PermanentError,
    Record,
    UnavailableError,
    sampled_out,
)
from tenx_search_indexer.domain import Document, from_event

DOCUMENT_EVENTS: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ProductCreated,
        ProductUpdated,
        StockChanged,
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
    )
}
BULK_LANES = 2  # bulk requests in flight at once for one batch
LANE_MIN = 200  # documents per lane, at least, before a batch is split
SLICE = 1000  # documents per bulk request of the consumer
MAX_LINKS = 128  # a bulk span links to at most this many records' spans

# Who of these users is erased (the search-indexer's tombstones).
Erased = Callable[[set[str]], Awaitable[set[str]]]


@contextlib.contextmanager
def unavailable_on_outage() -> Iterator[None]:
    """Elasticsearch down, overloaded or failing: ``UnavailableError`` (no dead letter)."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code in (404, 429) or exc.status_code >= 500:
            raise UnavailableError(f"elasticsearch: {exc}") from exc
        raise PermanentError(f"elasticsearch refused: {exc}") from exc
    except TransportError as exc:
        raise UnavailableError(f"elasticsearch: {exc!r}") from exc


async def bulk_write(
    es: AsyncElasticsearch,
    documents: Sequence[Document],
    *,
    index: str | None = None,
    lanes: int = BULK_LANES,
) -> list[str]:
    """Write ``documents`` (to their alias, or to ``index``); per document
    ``indexed``, or ``stale`` when the stored version is as new.

    A large batch goes as ``lanes`` bulk requests at once, split by document
    id (a document's writes stay in one request, in order), so Elasticsearch's
    write threads work while this process builds the next request."""
    if not documents:
        return []
    count = lanes if len(documents) >= LANE_MIN * lanes else 1
    split: list[list[int]] = [[] for _ in range(count)]
    for position, doc in enumerate(documents):
        split[zlib.crc32(doc.id.encode()) % count].append(position)
    answers = await asyncio.gather(
        *(_bulk(es, [documents[p] for p in lane], index) for lane in split if lane)
    )
    outcomes = [""] * len(documents)
    for lane, answer in zip((lane for lane in split if lane), answers, strict=True):
        for position, outcome in zip(lane, answer, strict=True):
            outcomes[position] = outcome
    return outcomes


async def _bulk(
    es: AsyncElasticsearch, documents: Sequence[Document], index: str | None
) -> list[str]:
    lines: list[bytes] = []
    for doc in documents:
        action = {"_index": index or doc.index, "_id": doc.id, "version": doc.version}
        lines += [
            orjson.dumps({"index": action | {"version_type": "external"}}),
            orjson.dumps(doc.source),
        ]
    with unavailable_on_outage():  # the body as NDJSON already: no second encoding
        response = await es.bulk(operations=cast(Any, b"\n".join(lines) + b"\n"))
    outcomes = []
    for item in response["items"]:
        result = item["index"]
        status = int(result["status"])
        if status < 300:
            outcomes.append("indexed")
        elif status == 409:
            outcomes.append("stale")
        elif status in (404, 429) or status >= 500:  # 404: the index went (an alias swap)
            raise UnavailableError(f"elasticsearch: {result['_id']}: {result.get('error')}")
        else:
            raise PermanentError(f"elasticsearch refused {result['_id']}: {result.get('error')}")
    return outcomes


async def drop_erased(
    es: AsyncElasticsearch, documents: Sequence[Document], erased: Erased, *, index: str
) -> int:
    """Delete, from ``index``, those of ``documents`` that belong to an erased user.

    Run after every write of people's documents. With the erasure's order
    (tombstone committed, then every index searched and cleared) this leaves
    no window: a write that read no tombstone happened before the search that
    finds it."""
    owners = {doc.user_id for doc in documents if doc.user_id}
    gone = await erased(owners) if owners else set()
    doomed = [doc.id for doc in documents if doc.user_id in gone]
    if doomed:
        with unavailable_on_outage():
            await es.bulk(operations=[{"delete": {"_index": index, "_id": id_}} for id_ in doomed])
    return len(doomed)


async def delete_user_documents(es: AsyncElasticsearch, user_id: str) -> int:
    """Every document of ``user_id``, from every orders index (a reindex's
    new one too); how many."""
    pattern = f"{ORDERS.alias}-*"
    deleted = 0
    with unavailable_on_outage():
        while True:
            await es.indices.refresh(index=pattern)
            found = await es.search(
                index=pattern, query={"term": {"user_id": user_id}}, size=1000, source=False
            )
            hits = found["hits"]["hits"]
            if not hits:
                return deleted
            await es.bulk(
                operations=[{"delete": {"_index": h["_index"], "_id": h["_id"]}} for h in hits]
            )
            deleted += len(hits)


class Indexer(Consumer):
    """The ``search-indexer`` consumer: documents by bulk (its batch handler), the rest as usual."""

    def __init__(
        self,
        *,
        es: AsyncElasticsearch,
        erased: Erased,
        targets: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """``targets`` sends an alias's documents to another index (the benchmark's)."""
        documents = BatchHandler(
            events=tuple(DOCUMENT_EVENTS.values()), handle=self.write_documents
        )
        super().__init__(batch_handler=documents, **kwargs)
        self._targets = dict(targets or {})
        self._es = es
        self._erased = erased
        self.freshness = Histogram(
            "tenx_search_index_freshness_seconds",
            "From an event's occurrence to its document written (searchable at the "
            "next refresh, within the index's refresh_interval)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=None,
        )

    async def write_documents(self, deliveries: list[Delivery]) -> list[str]:
        """The chunk's documents as bulk requests of ``SLICE``, all sent at once, so
        Elasticsearch indexes one while the next is built; done when all are."""
        documents = [
            (
                d.record,
                d.envelope,
                from_event(d.event, occurred_at=d.envelope.time, data=d.envelope.data),
            )
            for d in deliveries
        ]
        writes = [
            asyncio.create_task(self._write(documents[at : at + SLICE]))
            for at in range(0, len(documents), SLICE)
        ]
        try:
            results = await asyncio.gather(*writes)
        except BaseException:
            await asyncio.gather(*writes, return_exceptions=True)
            raise
        outcomes = [outcome for result in results for outcome in result]
        now = time.time()
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            if outcome == "indexed" and delivery.envelope.time:
                occurred = datetime.fromisoformat(delivery.envelope.time).timestamp()
                self.freshness.observe(max(0.0, now - occurred))
        return outcomes

    async def _write(self, documents: list[tuple[Record, Envelope, Document]]) -> list[str]:
        """One bulk request, under a span per record (each a child of its
        producer's; none for a trace that is not recorded) and a bulk span that
        links to them."""
        spans = [
            self.tracer.start_span(**self.process_span(record, envelope))
            for record, envelope, _ in documents
            if not sampled_out(record.headers)
        ]
        try:
            with self.tracer.start_as_current_span(
                "elasticsearch bulk",
                kind=SpanKind.CLIENT,
                links=[Link(span.get_span_context()) for span in spans[:MAX_LINKS]],
                attributes={
                    "db.system": "elasticsearch",
                    "db.operation.name": "bulk",
                    "tenx.documents": len(documents),
                },
            ):
                docs = [
                    replace(doc, index=self._targets.get(doc.index, doc.index))
                    for _, _, doc in documents
                ]
                outcomes = await bulk_write(self._es, docs, lanes=1)
                await drop_erased(self._es, docs, self._erased, index=ORDERS.alias)
        except Exception as exc:
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()
        return outcomes

    def collect(self) -> Iterator[Metric]:
        yield from super().collect()
        yield from self.freshness.collect()
