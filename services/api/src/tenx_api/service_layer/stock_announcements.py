"""StockChanged, once per product for all the stock changes of a short window.

An order (or a cancel, a compensation) changes a product's stock and bumps its
version in its own transaction, keeping the trace context of the request in
``change_trace``; it writes no StockChanged. The announcer, in the api's
worker, wakes on the ``stock`` NOTIFY that such a commit sends, waits
``stock_announce_window_s`` (0.25 s) for the changes that follow, then, in one
transaction, marks every product whose version is newer than the one last
announced (``announced_version``; the partial index ``ix_products_unannounced``
finds them) and stages one StockChanged per product with its newest state,
under the trace of its newest change. So a product sold a thousand times a
second is announced four times a second, with the stock it has, and the
search index, the caches' consumers and Kafka carry that much, not a
thousand. Nothing is lost: a change that commits after a round's read bumps
the version again and is in the next round; a crash before the commit leaves
the versions unannounced. Without NOTIFY it looks every
``stock_announce_poll_s`` (5 s). ``tenx_stock_announcements_total`` counts the
events written.

Cached product reads are not affected: a change drops them at its commit
(``ApiDeps.committed``). Admin changes (ProductCreated, ProductUpdated) are
written in their own transaction as before, and a price or name change that
leaves the stock alone marks its version announced there.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client import Counter
from prometheus_client.core import Metric

from tenx_api.adapters import statements as sql
from tenx_api.domain.catalog import event_fields
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.data import UnitOfWork
from tenx_common.events.catalog_products import StockChanged
from tenx_common.loops import listening, nap, pause, supervised

log = logging.getLogger(__name__)

CHANNEL = "stock"  # NOTIFY at the commit of a stock change
BATCH = 500  # products announced in one transaction, at most


def changed(uow: UnitOfWork) -> None:
    """In a transaction that changed a product's stock: the announcer wakes at its commit."""
    uow.wake(CHANNEL)


class StockAnnouncer:
    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps
        self.window_s = deps.settings.stock_announce_window_s
        self.poll_s = deps.settings.stock_announce_poll_s
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.announced = Counter(
            "tenx_stock_announcements", "StockChanged events written", registry=None
        )

    async def run(self) -> None:
        await supervised(
            self._run,
            stopping=self.stopping,
            what="stock announcer: announcing failed; retrying in 1 s",
            logger=log,
        )

    async def _run(self) -> None:
        async with listening(self.deps.sessions.engines.for_listening, CHANNEL, self._wake):
            while not self.stopping.is_set():
                self._wake.clear()
                if await self.announce() < BATCH:
                    await nap(self._wake, self.stopping, timeout_s=self.poll_s)
                # the window: what changes meanwhile goes in the next round, together
                await pause(self.stopping, self.window_s)

    async def announce(self) -> int:
        """One round: a StockChanged for each product changed since its last one."""
        async with self.deps.uow() as uow:
            products = await sql.announce_stock(await uow.session.connection(), limit=BATCH)
            for product in products:
                with _continuing(product.change_trace):
                    await uow.publish(StockChanged(**event_fields(product)))
            if products:
                await uow.commit()
        self.announced.inc(len(products))
        return len(products)

    def collect(self) -> Iterator[Metric]:
        yield from self.announced.collect()


@contextlib.contextmanager
def _continuing(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context in ``carrier`` current for the block."""
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
