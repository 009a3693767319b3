"""The delivery loop (notify's worker): sends what the handlers recorded.

Deliveries are leased work (``tenx_common.work.leased``). Up to ``CONCURRENCY``
(20) pending deliveries are claimed ``FOR UPDATE SKIP LOCKED`` and leased: their
``next_attempt_at`` moves ``delivery_timeout_s + RECORD_RETRY_S + 5`` seconds
ahead (35 s by default: longer than an attempt and the recording of its outcome
through a failover), and ``attempts`` counts the attempt. Each is sent outside
any transaction, within ``delivery_timeout_s`` (10 s) for the whole attempt:
an email over an SMTP session kept between messages (``adapters/smtp.py``), a
webhook over HTTP, redirects not followed. The outcomes are group-committed,
each fenced on its attempt: ``sent`` (the payload, which may hold a one-time
link, is dropped), or a retry after an exponential backoff with full jitter
(from ``delivery_backoff_s``, 1 s, doubling to at most 300 s), or ``dead``
after ``delivery_max_attempts`` (6; at once on a permanent refusal: an SMTP
5xx, a webhook answering 410 Gone, a deleted webhook, a refused target). Every
attempt is logged in ``delivery_attempts`` and is a span (``deliver email``,
``deliver webhook``) under the consumer span whose context the row keeps
(``trace_headers``): one order is one trace from the edge to the email.
Dead deliveries are notify's dead letters: listed with their last error by
``GET /v1/notifications/admin/deliveries?status=dead``, and sent again by
``POST /v1/notifications/admin/deliveries/{id}/retry``.

Exactly one email per event: the delivery row is unique per (event, channel)
and written with the event's inbox row, so a redelivered event adds none, and
a row that is ``sent`` is never sent again. What remains is at-least-once: an
SMTP server (or a webhook receiver) that accepted the message just before the
worker died, before the outcome committed, gets it again when the lease runs
out. The window is that exchange plus the wait for the commit that records it;
the copy carries the same ``Message-ID`` (``<delivery id@tenx.local>``) or
``webhook-id``, so the receiver can drop it. A database that is away (a
failover) does not widen it: a refused recording is tried again for
``RECORD_RETRY_S`` (20 s), within the lease, until a primary takes it.
"""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiosmtplib
import httpx
from cryptography.fernet import InvalidToken
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client.core import Metric
from sqlalchemy import (
    Table,
    func,
    select,
    update,
)

from tenx_common.loops import backoff_s, listening
from tenx_common.observability import traced_http_client
from tenx_common.web import ProblemError
from tenx_common.work import LeasedLoop, Tally, claim_due, fenced, tally_counter
from tenx_notify.adapters import statements as sql
from tenx_notify.adapters.orm import Delivery, Webhook
from tenx_notify.adapters.smtp import SmtpSessions
from tenx_notify.domain.deliveries import AttemptOutcome, DeliveryStatus
from tenx_notify.domain.messages import mime, render
from tenx_notify.domain.webhooks import TargetNotAllowedError, check_target, sign
from tenx_notify.service_layer.deps import NotifyDeps
from tenx_notify.service_layer.reactions import DELIVERIES
from tenx_notify.settings import Settings

log = logging.getLogger(__name__)


class PermanentDeliveryError(Exception):
    """Sending again cannot help (the server refused the recipient or message)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    kind: str
    channel: str
    payload: dict[str, Any]
    attempts: int
    trace_headers: dict[str, str]


class RefusedError(Exception):
    """The receiver answered, but not with a 2xx."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


# A sender returns the receiver's status code (None for SMTP), or raises.
Sender = Callable[[Claimed], Awaitable[int | None]]


async def send_email(deps: NotifyDeps, smtp: SmtpSessions, delivery: Claimed) -> int | None:
    settings = deps.settings
    payload = delivery.payload
    email = render(delivery.kind, payload["to"], payload)
    message = mime(
        email,
        sender=settings.mail_from,
        message_id=f"<{delivery.id}@tenx.local>",
        unsubscribe=f"{settings.public_base_url}/v1/notifications/preferences",
    )
    try:
        await smtp.send(message)
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise PermanentDeliveryError(f"SMTP {exc.code}: {exc.message}") from exc
        raise
    return None


async def send_webhook(deps: NotifyDeps, http: httpx.AsyncClient, delivery: Claimed) -> int:
    """POST the event, signed per Standard Webhooks; redirects are not followed."""
    webhook_id = uuid.UUID(delivery.channel.split(":", 1)[1])
    async with deps.uow() as uow:
        webhook = await uow.session.get(Webhook, webhook_id)
    if webhook is None:
        raise PermanentDeliveryError("the webhook was deleted")
    if not deps.settings.is_local:
        try:
            await check_target(webhook.url)
        except TargetNotAllowedError as exc:
            raise PermanentDeliveryError(f"target refused: {exc}") from exc
    try:
        secret = deps.fernet.decrypt(webhook.secret.encode()).decode()
    except InvalidToken as exc:
        raise PermanentDeliveryError("the webhook's secret cannot be decrypted") from exc
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    message_id = f"msg_{delivery.id.hex}"
    response = await http.post(
        webhook.url,
        content=body,
        headers={
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        },
    )
    if response.status_code == 410:  # the receiver says the endpoint is gone for good
        raise PermanentDeliveryError("HTTP 410: the endpoint is gone", 410)
    if not 200 <= response.status_code < 300:
        raise RefusedError(response.status_code)
    return response.status_code


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery: Claimed
    values: dict[str, Any]  # the delivery's new state
    log: dict[str, Any]  # its delivery_attempts row


CONCURRENCY = 20  # sends under way at once, at most
# How long a sent delivery's outcome is tried again while the database refuses
# it: longer than a failover (its target is 15 s), so a message sent just before
# the primary died is not sent again when its lease ends.
RECORD_RETRY_S = 20.0
_deliveries = cast("Table", Delivery.__table__)


class DeliveryRunner:
    """Deliveries as leased work (``tenx_common.work.leased``): a claim is a
    pending delivery at its attempt, an outcome that attempt's ``Attempt``."""

    def __init__(self, deps: NotifyDeps, tracer: Tracer) -> None:
        self.deps = deps
        self.tracer = tracer
        self.stopping = asyncio.Event()
        settings = deps.settings
        # Longer than an attempt can take (its timeout) and its recording (tried
        # again through a failover), so no two runners send one delivery.
        self.lease_s = settings.delivery_timeout_s + RECORD_RETRY_S + 5
        # Redirects are not followed: a webhook's target is the URL it registered.
        self._http = traced_http_client(timeout=settings.delivery_timeout_s, follow_redirects=False)
        self._smtp = SmtpSessions(
            settings.smtp_host, settings.smtp_port, timeout_s=settings.delivery_timeout_s
        )
        self._senders: dict[str, Sender] = {
            "email": lambda d: send_email(deps, self._smtp, d),
            "webhook": lambda d: send_webhook(deps, self._http, d),
        }
        self._loop: LeasedLoop[Claimed, Attempt] = LeasedLoop(
            name="delivery loop",
            claim=self.claim,
            attempt=self._deliver,
            record_batch=self.record,
            wakeups=lambda wake: listening(deps.listener, DELIVERIES, wake),
            concurrency=CONCURRENCY,
            poll_interval_s=settings.delivery_poll_interval_s,
            # Every attempt counts, recorded or not: a send that happened happened.
            tally=Tally(
                tally_counter("tenx_deliveries", "Delivery attempts, by outcome", ["outcome"]),
                labels=lambda attempt: (attempt.log["outcome"],),
                counts="attempts",
            ),
            drain_s=self.lease_s,
            record_retry_s=RECORD_RETRY_S,
            stopping=self.stopping,
        )

    async def run(self) -> None:
        try:
            await self._loop.run()
        finally:
            await self._http.aclose()
            await self._smtp.close()

    async def claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries to this runner, in one statement."""
        table = _deliveries
        statement = claim_due(
            table,
            due=[table.c.status == DeliveryStatus.PENDING, table.c.next_attempt_at <= func.now()],
            order_by=table.c.next_attempt_at,
            limit=limit,
            lease={
                "attempts": table.c.attempts + 1,
                "next_attempt_at": func.now() + timedelta(seconds=self.lease_s),
            },
        )
        async with self.deps.engine.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            Claimed(
                id=row.id,
                kind=row.kind,
                channel=row.channel,
                payload=row.payload or {},
                attempts=row.attempts,  # this one's, counted by the claim
                trace_headers=dict(row.trace_headers or {}),
            )
            for row in rows
        ]

    async def _deliver(self, delivery: Claimed) -> None:
        await self._loop.record(await self.attempt(delivery))

    async def attempt(self, delivery: Claimed) -> Attempt:
        """Send ``delivery`` once; what became of it, for ``record``."""
        settings = self.deps.settings
        channel = delivery.channel.split(":", 1)[0]
        with self.tracer.start_as_current_span(
            f"deliver {channel}",
            context=propagate.extract(delivery.trace_headers),
            kind=SpanKind.CLIENT,
            attributes={
                "tenx.delivery.id": str(delivery.id),
                "tenx.delivery.kind": delivery.kind,
                "tenx.delivery.attempt": delivery.attempts,
                **(
                    {
                        "network.protocol.name": "smtp",
                        "server.address": settings.smtp_host,
                        "server.port": settings.smtp_port,
                    }
                    if channel == "email"
                    else {}
                ),
            },
        ) as span:
            values: dict[str, Any]
            started = time.perf_counter()
            status_code: int | None = None
            try:
                async with asyncio.timeout(settings.delivery_timeout_s):  # the whole attempt
                    status_code = await self._senders[channel](delivery)
            except Exception as exc:
                status_code = getattr(exc, "status_code", None)
                values = after_failure(exc, attempts=delivery.attempts, settings=settings)
                span.set_status(Status(StatusCode.ERROR, values["last_error"]))
                if values.get("status") == DeliveryStatus.DEAD:
                    log.error("delivery %s is dead: %s", delivery.id, values["last_error"])
            else:
                values = {
                    "status": DeliveryStatus.SENT,
                    "sent_at": datetime.now(UTC),
                    "payload": None,
                    "next_attempt_at": None,
                }
        return Attempt(
            delivery=delivery,
            values=values,
            log={
                "delivery_id": delivery.id,
                "attempt": delivery.attempts,
                "outcome": values.get("status", AttemptOutcome.RETRIED),
                "status_code": status_code,
                "error": values.get("last_error"),
                "duration_ms": int((time.perf_counter() - started) * 1000),
                "at": datetime.now(UTC),
            },
        )

    async def record(self, attempts: Sequence[Attempt]) -> list[bool]:
        """The outcomes of ``attempts`` in one transaction, each fenced on its
        attempt (a delivery whose lease ran out and was claimed again is left to
        the newer attempt); whether each was recorded. The sent ones (nearly all)
        are one UPDATE, the attempts' log one INSERT. A crash before this commit
        sends them again when their leases end: delivery is at least once."""
        moved: set[tuple[uuid.UUID, int]] = set()
        async with self.deps.engine.begin() as conn:
            sent = [
                (a.delivery.id, a.delivery.attempts, a.values["sent_at"])
                for a in attempts
                if a.values.get("status") == DeliveryStatus.SENT
            ]
            if sent:
                moved |= await sql.mark_sent(conn, sent)
            for attempt in attempts:
                if attempt.values.get("status") == DeliveryStatus.SENT:
                    continue
                claim = {"status": DeliveryStatus.PENDING, "attempts": attempt.delivery.attempts}
                statement = fenced(_deliveries, row_id=attempt.delivery.id, claimed=claim)
                if (await conn.execute(statement.values(**attempt.values))).first() is not None:
                    moved.add((attempt.delivery.id, attempt.delivery.attempts))
            recorded = [(a.delivery.id, a.delivery.attempts) in moved for a in attempts]
            logged = [a.log for a, done in zip(attempts, recorded, strict=True) if done]
            if logged:
                await sql.log_attempts(conn, logged)
        return recorded

    def collect(self) -> Iterator[Metric]:
        return self._loop.collect()


def after_failure(exc: Exception, *, attempts: int, settings: Settings) -> dict[str, Any]:
    """A delivery's new state after failed attempt ``attempts``: dead at once
    when sending again cannot help (a permanent refusal, a channel no sender
    knows), or after the last attempt; else due again after a backoff with
    full jitter (receivers that failed together are not hit together again)."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if isinstance(exc, PermanentDeliveryError | KeyError) or (
        attempts >= settings.delivery_max_attempts
    ):
        return {"status": DeliveryStatus.DEAD, "last_error": error, "next_attempt_at": None}
    wait = backoff_s(
        attempts,
        base_s=settings.delivery_backoff_s,
        max_s=settings.delivery_backoff_max_s,
        jitter=True,
    )
    return {"last_error": error, "next_attempt_at": func.now() + timedelta(seconds=wait)}


# -- operators ---------------------------------------------------------------------


def view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "event_id": row.event_id,
        "channel": row.channel,
        "user_id": str(row.user_id),
        "kind": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }


async def list_deliveries(
    status: str | None, limit: int, *, deps: NotifyDeps
) -> list[dict[str, Any]]:
    query = select(Delivery.__table__).order_by(Delivery.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(Delivery.status == status)
    async with deps.engine.connect() as conn:
        return [view(row) for row in await conn.execute(query)]


async def retry_dead(delivery_id: uuid.UUID, *, deps: NotifyDeps) -> None:
    async with deps.engine.begin() as conn:
        found = await conn.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.DEAD)
            .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=func.now())
            .returning(Delivery.id)
        )
        if found.first() is None:
            raise ProblemError(
                status=404, code="not_found", detail="No dead delivery with this id."
            )
