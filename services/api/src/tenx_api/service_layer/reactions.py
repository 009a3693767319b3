"""What the api does when other services' events arrive (its consumer ``api``).

- UserRegistered (registration, choreographed): the customer profile is made
  with the name and email the user signed up with; what the user already set
  is kept, and an erased profile stays erased.
- AccountDeletionRequested (the erasure saga, orchestrated by auth): the
  profile is emptied to a tombstone, the user's orders are detached from them
  (a fresh pseudonymous owner id; amounts stay for the books), their stored
  idempotency answers are deleted, and AccountDataErased is staged in the same
  transaction as the reply.
"""

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert

from tenx_api.adapters.orm import CustomerProfile, IdempotencyKey, Order
from tenx_api.service_layer.customers import cache_key
from tenx_api.service_layer.deps import ApiDeps
from tenx_common.data import UnitOfWork
from tenx_common.events import Event
from tenx_common.events.auth_users import AccountDeletionRequested, UserRegistered
from tenx_common.events.privacy_erasure import AccountDataErased

SERVICE = "api"


def handlers(deps: ApiDeps) -> Mapping[type[Event], Callable[[UnitOfWork, Any], Awaitable[None]]]:
    return {
        UserRegistered: lambda uow, event: create_profile(uow, event, deps=deps),
        AccountDeletionRequested: lambda uow, event: erase_user(uow, event, deps=deps),
    }


async def create_profile(uow: UnitOfWork, event: UserRegistered, *, deps: ApiDeps) -> None:
    now = datetime.now(UTC)
    table = CustomerProfile.__table__
    statement = insert(CustomerProfile).values(
        user_id=event.user_id,
        email=event.email,
        name=event.name,
        version=1,
        created_at=now,
        updated_at=now,
    )
    await uow.session.execute(
        statement.on_conflict_do_update(
            index_elements=[CustomerProfile.user_id],
            set_={
                "email": statement.excluded.email,
                "name": func.coalesce(table.c.name, statement.excluded.name),
                "version": CustomerProfile.version + 1,
                "updated_at": now,
            },
            where=CustomerProfile.erased_at.is_(None),
        )
    )
    user = str(event.user_id)
    uow.after_commit(lambda: deps.committed(user, cache_key(event.user_id)), together=True)


async def erase_user(uow: UnitOfWork, event: AccountDeletionRequested, *, deps: ApiDeps) -> None:
    now = datetime.now(UTC)
    session = uow.session
    await session.execute(
        insert(CustomerProfile)
        .values(user_id=event.user_id, version=1, created_at=now, updated_at=now, erased_at=now)
        .on_conflict_do_update(
            index_elements=[CustomerProfile.user_id],
            set_={
                "email": None,
                "name": None,
                "shipping_address": None,
                "version": CustomerProfile.version + 1,
                "updated_at": now,
                "erased_at": now,
            },
        )
    )
    await session.execute(
        update(Order).where(Order.user_id == event.user_id).values(user_id=uuid.uuid4())
    )
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == event.user_id))
    await uow.publish(
        AccountDataErased(deletion_id=event.deletion_id, user_id=event.user_id, service=SERVICE)
    )
    user = str(event.user_id)
    uow.after_commit(lambda: deps.committed(user, cache_key(event.user_id)), together=True)
