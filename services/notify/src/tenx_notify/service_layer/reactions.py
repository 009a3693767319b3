"""What notify does with each event (its consumer ``notify``). Each handler runs
in the consumer's transaction, with the event's inbox row: the feed entry and
the deliveries to send are written there, once per event (the inbox), and once
per event and channel (``deliveries``' unique key). Sending is the worker's
delivery loop (``deliveries.py``); the live feed hears of a new entry after
the commit.

The address of an order email comes from the user's ``UserRegistered``, on
another topic: nothing orders the two, and a customer who orders the second
after signing up can be confirmed first. Such an email waits as
``awaiting_recipient`` (no address, not due) until that event arrives and
makes it due; it is never dropped.

UserRegistered keeps the user's contact (``recipients``), makes the emails
waiting for it due, and queues the verification email; PasswordResetRequested
queues the reset email. OrderConfirmed and OrderCancelled write, by the user's
preferences (both channels on until changed), an in-app entry and an email,
and a webhook call for each of the user's webhooks subscribed to
``order.confirmed``, ``order.cancelled`` or ``*``. AccountDeletionRequested
deletes the user's contact, preferences, feed, deliveries and webhooks, writes
a tombstone (``erased_users``) so that later events about them are ignored, and
stages AccountDataErased. A feed entry is unique per (event, user), a delivery
per (event, channel: ``email`` or ``webhook:<id>``).
"""

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, exists, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from tenx_common.data import UnitOfWork
from tenx_common.events import Event
from tenx_common.events.auth_users import (
    AccountDeletionRequested,
    PasswordResetRequested,
    UserRegistered,
)
from tenx_common.events.orders_orders import OrderCancelled, OrderConfirmed
from tenx_common.events.privacy_erasure import AccountDataErased
from tenx_common.observability import current_traceparent
from tenx_notify.adapters.orm import (
    Delivery,
    ErasedUser,
    Notification,
    Preferences,
    Recipient,
    Webhook,
)
from tenx_notify.domain.deliveries import DeliveryStatus
from tenx_notify.domain.webhooks import subscribed
from tenx_notify.service_layer.deps import NotifyDeps
from tenx_notify.service_layer.feed import public

SERVICE = "notify"
EMAIL = "email"
DELIVERIES = "deliveries"  # the NOTIFY channel that wakes the delivery loop


def handlers(
    deps: NotifyDeps,
) -> Mapping[type[Event], Callable[[UnitOfWork, Any], Awaitable[None]]]:
    return {
        UserRegistered: lambda uow, event: welcome(uow, event, deps=deps),
        PasswordResetRequested: lambda uow, event: password_reset(uow, event, deps=deps),
        OrderConfirmed: lambda uow, event: order_news(uow, event, deps=deps),
        OrderCancelled: lambda uow, event: order_news(uow, event, deps=deps),
        AccountDeletionRequested: lambda uow, event: erase_user(uow, event),
    }


async def welcome(uow: UnitOfWork, event: UserRegistered, *, deps: NotifyDeps) -> None:
    if await _erased(uow, event.user_id):
        return
    now = datetime.now(UTC)
    await uow.session.execute(
        insert(Recipient)
        .values(user_id=event.user_id, email=event.email, name=event.name, updated_at=now)
        .on_conflict_do_update(
            index_elements=[Recipient.user_id],
            set_={"email": event.email, "name": event.name, "updated_at": now},
        )
    )
    address = {"to": event.email, "name": event.name}
    await uow.session.execute(
        update(Delivery)
        .where(
            Delivery.user_id == event.user_id, Delivery.status == DeliveryStatus.AWAITING_RECIPIENT
        )
        .values(
            payload=Delivery.payload.op("||")(literal(address, JSONB)),
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
        )
    )
    link = f"{deps.settings.public_base_url}/verify-email?token={event.verification_token}"
    await _deliver(
        uow,
        event_id=_event_id(uow),
        channel=EMAIL,
        user_id=event.user_id,
        kind="verify_email",
        payload={
            "to": event.email,
            "name": event.name,
            "link": link,
            "expires_at": event.verification_expires_at.isoformat(),
        },
    )


async def password_reset(
    uow: UnitOfWork, event: PasswordResetRequested, *, deps: NotifyDeps
) -> None:
    if await _erased(uow, event.user_id):
        return
    link = f"{deps.settings.public_base_url}/reset-password?token={event.reset_token}"
    await _deliver(
        uow,
        event_id=_event_id(uow),
        channel=EMAIL,
        user_id=event.user_id,
        kind="password_reset",
        payload={"to": event.email, "link": link, "expires_at": event.expires_at.isoformat()},
    )


async def order_news(
    uow: UnitOfWork, event: OrderConfirmed | OrderCancelled, *, deps: NotifyDeps
) -> None:
    session = uow.session
    user = (await session.execute(_what_we_know(event.user_id))).one()
    if user.erased:
        return  # an order event that arrived after the erasure (another topic)
    event_id = _event_id(uow)
    wants_email = user.wants_email if user.wants_email is not None else True
    wants_in_app = user.wants_in_app if user.wants_in_app is not None else True
    confirmed = isinstance(event, OrderConfirmed)
    kind = "order_confirmed" if confirmed else "order_cancelled"
    details: dict[str, Any] = {"order_id": str(event.order_id)}
    if isinstance(event, OrderConfirmed):
        details |= {"total": f"{event.total_cents / 100:.2f}", "currency": event.currency}
    else:
        details |= {"reason": event.reason}
    if wants_in_app:
        entry = (
            await session.execute(
                insert(Notification)
                .values(
                    id=uuid.uuid4(),
                    user_id=event.user_id,
                    event_id=event_id,
                    kind=kind.replace("_", "."),
                    title="Order confirmed" if confirmed else "Order cancelled",
                    body=(
                        f"Order {event.order_id} is confirmed."
                        if confirmed
                        else f"Order {event.order_id} is cancelled ({details['reason']})."
                    ),
                    data=details,
                    created_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing()
                .returning(Notification)
            )
        ).scalar_one_or_none()
        if entry is not None:
            document = public(entry)
            uow.after_commit(lambda: deps.hub.publish(event.user_id, document))
    hooks = await session.scalars(select(Webhook).where(Webhook.user_id == event.user_id))
    name = kind.replace("_", ".")
    for hook in hooks:
        if subscribed(hook.events, name):
            await _deliver(
                uow,
                event_id=event_id,
                channel=f"webhook:{hook.id}",
                user_id=event.user_id,
                kind=name,
                payload={
                    "type": name,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "data": {"user_id": str(event.user_id), **details},
                },
            )
    if wants_email:
        await _deliver(
            uow,
            event_id=event_id,
            channel=EMAIL,
            user_id=event.user_id,
            kind=kind,
            payload={
                **({"to": user.to, "name": user.name} if user.to is not None else {}),
                "preferences_link": f"{deps.settings.public_base_url}/v1/notifications/preferences",
                **details,
            },
            awaiting=user.to is None,
        )


async def erase_user(uow: UnitOfWork, event: AccountDeletionRequested) -> None:
    """The account-deletion saga: everything notify holds of the user goes, and
    the reply is staged in the same transaction."""
    for table in (Notification, Delivery, Preferences, Recipient, Webhook):
        await uow.session.execute(delete(table).where(table.user_id == event.user_id))
    await uow.session.execute(
        insert(ErasedUser)
        .values(user_id=event.user_id, erased_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
    await uow.publish(
        AccountDataErased(deletion_id=event.deletion_id, user_id=event.user_id, service=SERVICE)
    )


async def _deliver(
    uow: UnitOfWork,
    *,
    event_id: str,
    channel: str,
    user_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    awaiting: bool = False,
) -> None:
    now = datetime.now(UTC)
    await uow.session.execute(
        insert(Delivery)
        .values(
            id=uuid.uuid4(),
            event_id=event_id,
            channel=channel,
            user_id=user_id,
            kind=kind,
            payload=payload,
            status=DeliveryStatus.AWAITING_RECIPIENT if awaiting else DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=None if awaiting else now,
            created_at=now,
            trace_headers=dict(current_traceparent()),
        )
        .on_conflict_do_nothing()
    )
    uow.wake(DELIVERIES)


def _what_we_know(user_id: uuid.UUID) -> Select[Any]:
    """In one statement: whether the user was erased, their preferences (NULL
    when they kept the defaults) and their address (NULL until their sign-up
    has arrived)."""

    def about(column: Any, table: Any) -> Any:
        return select(column).where(table.user_id == user_id).scalar_subquery()

    return select(
        exists().where(ErasedUser.user_id == user_id).label("erased"),
        about(Preferences.email, Preferences).label("wants_email"),
        about(Preferences.in_app, Preferences).label("wants_in_app"),
        about(Recipient.email, Recipient).label("to"),
        about(Recipient.name, Recipient).label("name"),
    )


async def _erased(uow: UnitOfWork, user_id: uuid.UUID) -> bool:
    return await uow.session.get(ErasedUser, user_id) is not None


def _event_id(uow: UnitOfWork) -> str:
    assert uow.cause is not None, "handlers run in the consumer's unit of work"
    return uow.cause
