"""What the search-indexer's handlers need; built once by the bootstrap."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from elasticsearch import AsyncElasticsearch
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data import UnitOfWork
from tenx_search_indexer.adapters.orm import ErasedUser
from tenx_search_indexer.settings import Settings


@dataclass
class IndexerDeps:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    engine: AsyncEngine
    es: AsyncElasticsearch

    async def erased(self, user_ids: set[str]) -> set[str]:
        """Those of ``user_ids`` whose account was erased."""
        async with self.engine.connect() as conn:
            found = await conn.scalars(
                select(ErasedUser.user_id).where(
                    ErasedUser.user_id.in_([uuid.UUID(u) for u in user_ids])
                )
            )
            return {str(user_id) for user_id in found}
