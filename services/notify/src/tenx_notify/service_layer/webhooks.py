"""A user's webhooks: register (the secret is shown once), list, delete, and
the delivery log of one.

A webhook is a URL (http or https, at most 2,000 characters) and one to three
of ``order.confirmed``, ``order.cancelled`` and ``*``, each once. Registering
answers 201 with the secret (``whsec_`` and 24 random bytes in base64), shown
only then and stored encrypted (Fernet, ``TENX_NOTIFY_SECRET_ENCRYPTION_KEY``;
notify does not start without it). Outside local mode the target is checked
(``domain.webhooks.check_target``: 422 ``webhook_target_not_allowed``); in
local mode no target is checked, so the test receivers on 127.0.0.1 work. The delivery log gives
each delivery with its attempts (outcome, status code, error, duration).
Someone else's webhook is 404.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from tenx_common.web import ProblemError
from tenx_notify.adapters.orm import Delivery, DeliveryAttempt, Webhook
from tenx_notify.domain.webhooks import TargetNotAllowedError, WebhookIn, check_target, new_secret
from tenx_notify.service_layer.deps import NotifyDeps


def public(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": str(webhook.id),
        "url": webhook.url,
        "events": webhook.events,
        "created_at": webhook.created_at.isoformat(),
    }


async def register(user_id: uuid.UUID, cmd: WebhookIn, *, deps: NotifyDeps) -> dict[str, Any]:
    url = str(cmd.url)
    if not deps.settings.is_local:  # locally, receivers listen on 127.0.0.1
        try:
            await check_target(url)
        except TargetNotAllowedError as exc:
            raise ProblemError(
                status=422, code="webhook_target_not_allowed", detail=str(exc)
            ) from exc
    secret = new_secret()
    webhook = Webhook(
        id=uuid.uuid4(),
        user_id=user_id,
        url=url,
        events=list(cmd.events),
        secret=deps.fernet.encrypt(secret.encode()).decode(),  # stored encrypted
        created_at=datetime.now(UTC),
    )
    async with deps.uow() as uow:
        uow.session.add(webhook)
        await uow.commit()
    return {**public(webhook), "secret": secret}


async def _own(user_id: uuid.UUID, webhook_id: uuid.UUID, *, deps: NotifyDeps) -> Webhook:
    async with deps.uow() as uow:
        webhook = await uow.session.get(Webhook, webhook_id)
    if webhook is None or webhook.user_id != user_id:
        raise ProblemError(status=404, code="not_found", detail="No such webhook.")
    return webhook


async def list_own(user_id: uuid.UUID, *, deps: NotifyDeps) -> list[dict[str, Any]]:
    async with deps.uow() as uow:
        found = await uow.session.scalars(
            select(Webhook).where(Webhook.user_id == user_id).order_by(Webhook.created_at)
        )
        return [public(webhook) for webhook in found]


async def remove(user_id: uuid.UUID, webhook_id: uuid.UUID, *, deps: NotifyDeps) -> None:
    await _own(user_id, webhook_id, deps=deps)
    async with deps.uow() as uow:
        await uow.session.execute(delete(Webhook).where(Webhook.id == webhook_id))
        await uow.commit()


async def deliveries(
    user_id: uuid.UUID, webhook_id: uuid.UUID, *, limit: int, deps: NotifyDeps
) -> list[dict[str, Any]]:
    """The webhook's deliveries, newest first, each with its attempts."""
    await _own(user_id, webhook_id, deps=deps)
    async with deps.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(Delivery)
                .where(Delivery.channel == f"webhook:{webhook_id}")
                .order_by(Delivery.created_at.desc())
                .limit(limit)
            )
        ).all()
        attempts = (
            await uow.session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_([row.id for row in rows]))
                .order_by(DeliveryAttempt.id)
            )
        ).all()
    by_delivery: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(
            {
                "attempt": attempt.attempt,
                "outcome": attempt.outcome,
                "status_code": attempt.status_code,
                "error": attempt.error,
                "duration_ms": attempt.duration_ms,
                "at": attempt.at.isoformat(),
            }
        )
    return [
        {
            "id": f"msg_{row.id.hex}",
            "event": row.kind,
            "event_id": row.event_id,
            "status": row.status,
            "attempts": by_delivery.get(row.id, []),
            "created_at": row.created_at.isoformat(),
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        }
        for row in rows
    ]
