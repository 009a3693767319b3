"""The order path's SQL in notify, in one place and one style (as the api's
``tenx_api.adapters.statements``): Core statements built once, run on a
connection by named functions, each taking a set of rows where the callers
have a set. What an order event writes (``service_layer.reactions``) and
what the delivery loop records (``service_layer.deliveries``)."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    Row,
    Uuid,
    any_,
    bindparam,
    column,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tenx_notify.adapters.orm import Base
from tenx_notify.domain.deliveries import DeliveryStatus

NOTIFICATIONS, DELIVERIES, ATTEMPTS, WEBHOOKS, PREFERENCES, RECIPIENTS, ERASED = (
    Base.metadata.tables[name]
    for name in (
        "notifications",
        "deliveries",
        "delivery_attempts",
        "webhooks",
        "preferences",
        "recipients",
        "erased_users",
    )
)

# -- what is known of users -------------------------------------------------------

_USERS = (
    func.unnest(bindparam("users", type_=ARRAY(Uuid)))
    .table_valued(column("user_id", Uuid))
    .render_derived(name="u")
)
_WHAT_WE_KNOW = select(
    _USERS.c.user_id,
    exists().where(ERASED.c.user_id == _USERS.c.user_id).label("erased"),
    PREFERENCES.c.email.label("wants_email"),
    PREFERENCES.c.in_app.label("wants_in_app"),
    RECIPIENTS.c.email.label("to"),
    RECIPIENTS.c.name.label("name"),
).select_from(
    _USERS.outerjoin(PREFERENCES, PREFERENCES.c.user_id == _USERS.c.user_id).outerjoin(
        RECIPIENTS, RECIPIENTS.c.user_id == _USERS.c.user_id
    )
)
_WEBHOOKS_OF = select(WEBHOOKS.c.id, WEBHOOKS.c.user_id, WEBHOOKS.c.events).where(
    WEBHOOKS.c.user_id == any_(bindparam("users", type_=ARRAY(Uuid)))
)


async def what_we_know(conn: AsyncConnection, users: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """For each of ``users``, by id: whether they were erased (``erased``), their
    preferences (``wants_email``, ``wants_in_app``: NULL when they kept the
    defaults) and their address (``to``, ``name``: NULL until their sign-up
    has arrived)."""
    return {row.user_id: row for row in await conn.execute(_WHAT_WE_KNOW, {"users": users})}


async def webhooks_of(
    conn: AsyncConnection, users: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Any]]:
    """The webhooks (id, user_id, events) of ``users``, by user."""
    hooks: dict[uuid.UUID, list[Any]] = {}
    for hook in await conn.execute(_WEBHOOKS_OF, {"users": users}):
        hooks.setdefault(hook.user_id, []).append(hook)
    return hooks


# -- the feed and the deliveries ----------------------------------------------------

# RETURNING makes SQLAlchemy send many rows as one INSERT. A feed entry is
# unique per (event, user), a delivery per (event, channel): a repeat adds none.
_NEW_ENTRIES = insert(NOTIFICATIONS).on_conflict_do_nothing().returning(*NOTIFICATIONS.c)
_NEW_DELIVERIES = insert(DELIVERIES).on_conflict_do_nothing().returning(DELIVERIES.c.id)


async def insert_entries(
    conn: AsyncConnection, entries: Sequence[dict[str, Any]]
) -> list[Row[Any]]:
    """The feed entries of ``entries`` that are new, in the feed's order (seq)."""
    written = await conn.execute(_NEW_ENTRIES, list(entries))
    return sorted(written, key=lambda entry: entry.seq)


async def insert_deliveries(conn: AsyncConnection, deliveries: Sequence[dict[str, Any]]) -> None:
    await conn.execute(_NEW_DELIVERIES, list(deliveries))


# -- the delivery loop's outcomes -----------------------------------------------------


def _mark_sent() -> Any:
    v = (
        func.unnest(
            bindparam("each_id", type_=ARRAY(Uuid)),
            bindparam("each_attempts", type_=ARRAY(Integer)),
            bindparam("each_sent_at", type_=ARRAY(DateTime(timezone=True))),
        )
        .table_valued(
            column("id", Uuid), column("attempts", Integer), column("sent_at", DateTime(True))
        )
        .render_derived(name="v")
    )
    c = DELIVERIES.c
    return (
        update(DELIVERIES)
        .where(c.id == v.c.id, c.status == DeliveryStatus.PENDING, c.attempts == v.c.attempts)
        .values(status=DeliveryStatus.SENT, sent_at=v.c.sent_at, payload=None, next_attempt_at=None)
        .returning(c.id, c.attempts)
    )


_MARK_SENT = _mark_sent()
_LOG_ATTEMPTS = insert(ATTEMPTS).returning(ATTEMPTS.c.id)


async def mark_sent(
    conn: AsyncConnection, sent: Sequence[tuple[uuid.UUID, int, datetime]]
) -> set[tuple[uuid.UUID, int]]:
    """Mark deliveries (id, claimed attempt, sent at) sent, each only while it
    is still pending at the attempt its runner claimed (its fence); the
    (id, attempt) of those marked. The payload, which may hold a one-time
    link, is dropped."""
    rows = await conn.execute(
        _MARK_SENT,
        {
            "each_id": [delivery_id for delivery_id, _, _ in sent],
            "each_attempts": [attempts for _, attempts, _ in sent],
            "each_sent_at": [at for _, _, at in sent],
        },
    )
    return {(row.id, row.attempts) for row in rows}


async def log_attempts(conn: AsyncConnection, attempts: Sequence[dict[str, Any]]) -> None:
    await conn.execute(_LOG_ATTEMPTS, list(attempts))
