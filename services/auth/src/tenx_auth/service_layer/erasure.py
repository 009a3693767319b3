"""The account-deletion saga, orchestrated by auth (GDPR erasure).

1. ``DELETE /v1/auth/me`` records the deletion, ends the user's sessions and
   stages AccountDeletionRequested (``handlers.request_account_deletion``).
2. Each service in ``deletion_participants`` erases the user's data and
   replies AccountDataErased on ``privacy.erasure`` (see that module for the
   protocol). ``record_reply`` keeps one reply per service.
3. When every participant has replied, the same transaction deletes the
   credentials (the user row; its tokens go with it), completes the deletion
   and stages AccountDeleted.
4. ``rerequest_missing`` (the worker, every few seconds) publishes the
   request again, with a new event id, for deletions still waiting after
   ``deletion_rerequest_after_s``, backing off to at most an hour between
   re-requests. Every participant's erasure is idempotent.

``GET /v1/auth/deletions/{id}`` (the owner or an admin, else 404) shows where a
deletion stands: ``requested`` with the replies so far and the services it is
still ``waiting_for``, then ``completed``.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from tenx_auth.adapters.orm import AccountDeletion, DeletionReply, User
from tenx_auth.service_layer.deps import AuthDeps
from tenx_common.data import UnitOfWork
from tenx_common.events.auth_users import AccountDeleted, AccountDeletionRequested
from tenx_common.events.privacy_erasure import AccountDataErased
from tenx_common.loops import backoff_s

COMPLETED = "completed"


async def record_reply(uow: UnitOfWork, event: AccountDataErased, *, deps: AuthDeps) -> None:
    session = uow.session
    deletion = await session.get(AccountDeletion, event.deletion_id, with_for_update=True)
    if deletion is None or deletion.completed_at is not None:
        return  # unknown, or done already: a late or repeated reply changes nothing
    await session.execute(
        insert(DeletionReply)
        .values(deletion_id=deletion.id, service=event.service, erased_at=func.now())
        .on_conflict_do_nothing()
    )
    replied = set(
        (
            await session.scalars(
                select(DeletionReply.service).where(DeletionReply.deletion_id == deletion.id)
            )
        ).all()
    )
    if set(deps.settings.deletion_participants) <= replied:
        await session.execute(delete(User).where(User.id == deletion.user_id))
        deletion.status = COMPLETED
        deletion.completed_at = datetime.now(UTC)
        await uow.publish(AccountDeleted(user_id=deletion.user_id, deletion_id=deletion.id))


async def rerequest_missing(*, deps: AuthDeps) -> int:
    """Publish the request again for deletions whose replies are overdue; how many."""
    settings = deps.settings
    now = datetime.now(UTC)
    async with deps.uow() as uow:
        overdue = (
            await uow.session.scalars(
                select(AccountDeletion)
                .where(
                    AccountDeletion.completed_at.is_(None),
                    AccountDeletion.next_request_at <= now,
                )
                .order_by(AccountDeletion.next_request_at)
                .limit(100)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for deletion in overdue:
            await uow.publish(
                AccountDeletionRequested(user_id=deletion.user_id, deletion_id=deletion.id)
            )
            deletion.requests += 1
            # Backing off: each wait is twice the one before, at most an hour.
            wait = backoff_s(
                deletion.requests, base_s=settings.deletion_rerequest_after_s, max_s=3600.0
            )
            deletion.next_request_at = now + timedelta(seconds=wait)
        await uow.commit()
    return len(overdue)


async def deletion_view(deletion: AccountDeletion, *, deps: AuthDeps) -> dict[str, Any]:
    async with deps.uow() as uow:
        replies = (
            await uow.session.scalars(
                select(DeletionReply)
                .where(DeletionReply.deletion_id == deletion.id)
                .order_by(DeletionReply.erased_at)
            )
        ).all()
    replied = {reply.service for reply in replies}
    return {
        "deletion_id": deletion.id,
        "status": deletion.status,
        "requested_at": deletion.requested_at,
        "completed_at": deletion.completed_at,
        "requests": deletion.requests,
        "replies": [{"service": r.service, "erased_at": r.erased_at} for r in replies],
        "waiting_for": sorted(set(deps.settings.deletion_participants) - replied),
    }
