"""What notify's HTTP routes return.

Each model has exactly the fields its service-layer function writes: FastAPI
keeps only a model's fields, so a field missing here would vanish from the
answer. Ids the handlers write as strings are typed ``UUID`` (they read back
the same), times ``Timestamp`` (see ``tenx_common.web.timestamps``)."""

from typing import Any
from uuid import UUID

from pydantic import BaseModel

from tenx_common.web import Timestamp
from tenx_notify.domain.deliveries import AttemptOutcome, DeliveryStatus
from tenx_notify.domain.webhooks import EventName


class NotificationPublic(BaseModel):
    """One entry of the feed; ``seq`` orders the feed and is the stream's event id."""

    id: UUID
    seq: int
    kind: str
    title: str
    body: str
    data: dict[str, Any]  # what the entry is about (an order's id, total, reason...)
    created_at: Timestamp
    read_at: Timestamp | None


class PreferencesPublic(BaseModel):
    """Both channels on until changed (``updated_at`` null until then)."""

    email: bool
    in_app: bool
    updated_at: Timestamp | None


class WebhookPublic(BaseModel):
    id: UUID
    url: str
    events: list[EventName]
    created_at: Timestamp


class WebhookCreated(WebhookPublic):
    secret: str  # shown this once


class AttemptLogged(BaseModel):
    attempt: int
    outcome: AttemptOutcome
    status_code: int | None  # the receiver's answer, when it answered
    error: str | None
    duration_ms: int
    at: Timestamp


class WebhookDelivery(BaseModel):
    id: str  # the webhook-id header of the delivery: msg_<hex>
    event: str
    event_id: str
    status: DeliveryStatus
    attempts: list[AttemptLogged]
    created_at: Timestamp
    sent_at: Timestamp | None


class DeliveryPublic(BaseModel):
    """A delivery as operators see it (any channel)."""

    id: UUID
    event_id: str
    channel: str  # email, or webhook:<id>
    user_id: UUID
    kind: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: Timestamp
    sent_at: Timestamp | None


class RetryScheduled(BaseModel):
    status: DeliveryStatus  # pending: the delivery loop sends it again
