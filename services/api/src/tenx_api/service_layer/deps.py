"""What the api's handlers need; built once by the bootstrap."""

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from elasticsearch import AsyncElasticsearch
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_api.domain.payments import PaymentProvider
from tenx_api.settings import Settings
from tenx_common.data import Cache, SessionRouter, UnitOfWork


class PriceBook:
    """Each product's price and currency as this process last read them: what
    a placement prices its lines at. The database reserves a line only at
    that price, and refuses one priced otherwise with the prices of now,
    which the placement learns before it runs again; so a price here is a
    guess that saves a read, never trusted."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._known: dict[uuid.UUID, tuple[int, str]] = {}

    def get(self, product_id: uuid.UUID) -> tuple[int, str] | None:
        return self._known.get(product_id)

    def missing(self, product_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        return [product_id for product_id in product_ids if product_id not in self._known]

    def learn(self, prices: Mapping[uuid.UUID, tuple[int, str]]) -> None:
        if len(self._known) + len(prices) > self.size:
            self._known.clear()  # a catalog larger than the book: start again
        self._known.update(prices)


@dataclass
class ApiDeps:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    sessions: SessionRouter  # writes to the primary, reads to the replicas (read-your-writes)
    cache: Cache
    payments: PaymentProvider
    es: AsyncElasticsearch
    prices: PriceBook = field(default_factory=PriceBook)

    @functools.cached_property
    def autocommit(self) -> AsyncEngine:
        """The primary, for a statement that is its own transaction (no BEGIN
        and COMMIT around it: two round trips fewer)."""
        return self.sessions.engines.primary.execution_options(isolation_level="AUTOCOMMIT")

    async def committed(self, client: str, *cache_keys: str) -> None:
        """After a commit: the writing client, and every cached copy rebuilt from
        now on, read the change (never a replica that has not replayed it); then
        the cached copies go."""
        await self.sessions.record_write(client, *cache_keys)
        if cache_keys:
            await self.cache.invalidate(*cache_keys)
