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

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from sqlalchemy import (
    delete,
    literal,
    update,
)
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
from tenx_common.messaging import Caused, Handler, SetHandler
from tenx_common.observability import current_traceparent
from tenx_notify.adapters import statements as sql
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


def handlers(deps: NotifyDeps) -> Mapping[type[Event], Handler | SetHandler]:
    news = SetHandler(lambda uow, items: order_news(uow, items, deps=deps))
    return {
        UserRegistered: lambda uow, event: welcome(uow, event, deps=deps),
        PasswordResetRequested: lambda uow, event: password_reset(uow, event, deps=deps),
        OrderConfirmed: news,
        OrderCancelled: news,
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
        user_id=event.user_id,
        kind="password_reset",
        payload={"to": event.email, "link": link, "expires_at": event.expires_at.isoformat()},
    )


async def order_news(uow: UnitOfWork, items: list[Caused], *, deps: NotifyDeps) -> None:
    """OrderConfirmed and OrderCancelled, a run of them at once: one read of what
    is known of their users, one of their webhooks, one insert of the feed
    entries and one of the deliveries (each delivery under its event's trace)."""
    users = list(dict.fromkeys(item.event.user_id for item in items))
    connection = await uow.session.connection()
    known = await sql.what_we_know(connection, users)
    hooks = await sql.webhooks_of(connection, users)
    entries: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for item in items:
        event, user = item.event, known[item.event.user_id]
        if user.erased:
            continue  # an order event that arrived after the erasure (another topic)
        news = _news(event)
        if user.wants_in_app is not False:  # both channels are on until changed
            entries.append(_entry(event, item.cause, news))
        token = otel_context.attach(item.context)
        try:
            trace_headers = dict(current_traceparent())
        finally:
            otel_context.detach(token)
        for hook in hooks.get(event.user_id, []):
            if subscribed(hook.events, news.name):
                payload = {
                    "type": news.name,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "data": {"user_id": str(event.user_id), **news.details},
                }
                deliveries.append(
                    _delivery(
                        item.cause,
                        f"webhook:{hook.id}",
                        event.user_id,
                        news.name,
                        payload,
                        trace_headers,
                    )
                )
        if user.wants_email is not False:
            payload = {
                **({"to": user.to, "name": user.name} if user.to is not None else {}),
                "preferences_link": f"{deps.settings.public_base_url}/v1/notifications/preferences",
                **news.details,
            }
            deliveries.append(
                _delivery(
                    item.cause,
                    EMAIL,
                    event.user_id,
                    news.kind,
                    payload,
                    trace_headers,
                    awaiting=user.to is None,
                )
            )
    if entries:
        for entry in await sql.insert_entries(connection, entries):  # the live feed's order
            document = public(entry)
            uow.after_commit(functools.partial(deps.hub.publish, entry.user_id, document))
    if deliveries:
        await sql.insert_deliveries(connection, deliveries)
        uow.wake(DELIVERIES)


@dataclass(frozen=True, slots=True)
class _News:
    kind: str  # the email's template: order_confirmed or order_cancelled
    name: str  # the feed's and webhooks' name: order.confirmed or order.cancelled
    title: str
    body: str
    details: dict[str, Any]


def _news(event: OrderConfirmed | OrderCancelled) -> _News:
    details: dict[str, Any] = {"order_id": str(event.order_id)}
    if isinstance(event, OrderConfirmed):
        details |= {"total": f"{event.total_cents / 100:.2f}", "currency": event.currency}
        body = f"Order {event.order_id} is confirmed."
        return _News("order_confirmed", "order.confirmed", "Order confirmed", body, details)
    details |= {"reason": event.reason}
    body = f"Order {event.order_id} is cancelled ({event.reason})."
    return _News("order_cancelled", "order.cancelled", "Order cancelled", body, details)


def _entry(event: OrderConfirmed | OrderCancelled, cause: str, news: _News) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "user_id": event.user_id,
        "event_id": cause,
        "kind": news.name,
        "title": news.title,
        "body": news.body,
        "data": news.details,
        "created_at": datetime.now(UTC),
    }


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


def _delivery(
    event_id: str,
    channel: str,
    user_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    trace_headers: dict[str, str],
    *,
    awaiting: bool = False,
) -> dict[str, Any]:
    """A delivery row; one that awaits its recipient's address is not due."""
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "event_id": event_id,
        "channel": channel,
        "user_id": user_id,
        "kind": kind,
        "payload": payload,
        "status": DeliveryStatus.AWAITING_RECIPIENT if awaiting else DeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": None if awaiting else now,
        "created_at": now,
        "trace_headers": trace_headers,
    }


async def _deliver(
    uow: UnitOfWork, *, event_id: str, user_id: uuid.UUID, kind: str, payload: dict[str, Any]
) -> None:
    """One email, under the current trace."""
    row = _delivery(event_id, EMAIL, user_id, kind, payload, dict(current_traceparent()))
    await sql.insert_deliveries(await uow.session.connection(), [row])
    uow.wake(DELIVERIES)


async def _erased(uow: UnitOfWork, user_id: uuid.UUID) -> bool:
    return await uow.session.get(ErasedUser, user_id) is not None


def _event_id(uow: UnitOfWork) -> str:
    assert uow.cause is not None, "handlers run in the consumer's unit of work"
    return uow.cause
