"""The search-indexer's part of the account-deletion saga: every document of
the user goes, then the reply.

The tombstone is committed first, on its own; then every orders index
(``orders-*``, a reindex's new one too) is refreshed, searched for the user and
cleared; then AccountDataErased is staged with the inbox row. Every write of
people's documents checks the tombstones of their owners and deletes theirs
again (``indexing.drop_erased``), so a write racing the erasure cannot leave a
document behind: it either read the tombstone or came before the search.

Left so: the api gives the erased user's orders a fresh pseudonymous owner id
without an event, so they are missing from the live index until one of them
changes again or a reindex copies them, under the pseudonym.
"""

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from tenx_common.data import UnitOfWork
from tenx_common.events import Event
from tenx_common.events.auth_users import AccountDeletionRequested
from tenx_common.events.privacy_erasure import AccountDataErased
from tenx_common.messaging import Handler
from tenx_search_indexer.adapters.orm import ErasedUser
from tenx_search_indexer.service_layer.deps import IndexerDeps
from tenx_search_indexer.service_layer.indexing import delete_user_documents

SERVICE = "search-indexer"


def handlers(deps: IndexerDeps) -> dict[type[Event], Handler]:
    return {AccountDeletionRequested: lambda uow, event: erase_user(uow, event, deps=deps)}


async def erase_user(
    uow: UnitOfWork, event: AccountDeletionRequested, *, deps: IndexerDeps
) -> None:
    # The tombstone first, committed on its own: from now on a write of one of
    # the user's documents deletes it again (indexing.drop_erased).
    async with deps.engine.begin() as conn:
        await conn.execute(
            insert(ErasedUser)
            .values(user_id=event.user_id, erased_at=func.now())
            .on_conflict_do_nothing()
        )
    await delete_user_documents(deps.es, str(event.user_id))
    await uow.publish(
        AccountDataErased(deletion_id=event.deletion_id, user_id=event.user_id, service=SERVICE)
    )
