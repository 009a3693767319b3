"""notify's HTTP routes: the feed and its live stream, preferences, and the
operators' view of deliveries."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from tenx_common.runtime import handler_deps
from tenx_common.security import AdminUser, CurrentUser
from tenx_common.web import Items, Page, ProblemError, open_stream
from tenx_notify.domain.deliveries import DeliveryStatus
from tenx_notify.domain.preferences import PreferencesIn
from tenx_notify.domain.webhooks import WebhookIn
from tenx_notify.entrypoints.schemas import (
    DeliveryPublic,
    NotificationPublic,
    PreferencesPublic,
    RetryScheduled,
    WebhookCreated,
    WebhookDelivery,
    WebhookPublic,
)
from tenx_notify.service_layer import deliveries, feed, preferences, webhooks
from tenx_notify.service_layer.deps import NotifyDeps

Deps = Annotated[NotifyDeps, Depends(handler_deps)]

router = APIRouter(prefix="/v1")


@router.get(
    "/notifications/stream",
    tags=["notifications"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "An event stream: `id` (the feed seq), `event`, `data` (JSON)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def stream(
    principal: CurrentUser,
    deps: Deps,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Server-Sent Events: each new notification as it arrives (``id`` is its
    ``seq``); reconnect with ``Last-Event-ID`` to get what was missed."""
    after: int | None = None
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise ProblemError(
                status=400, code="invalid_last_event_id", detail="Last-Event-ID is a feed seq."
            )
        after = int(last_event_id)
    events = feed.live_feed(principal.user_id, last_event_id=after, deps=deps)
    return StreamingResponse(
        await open_stream(events),  # subscribed and the backlog read: else a problem, not a 200
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/notifications", tags=["notifications"])
async def list_notifications(
    principal: CurrentUser,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Page[NotificationPublic]:
    items, next_cursor = await feed.list_feed(
        principal.user_id, limit=limit, cursor=cursor, deps=deps
    )
    return Page[NotificationPublic].model_validate({"items": items, "next_cursor": next_cursor})


@router.post(
    "/notifications/{notification_id}/read",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["notifications"],
)
async def mark_read(notification_id: UUID, principal: CurrentUser, deps: Deps) -> Response:
    await feed.mark_read(principal.user_id, notification_id, deps=deps)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/notifications/preferences", tags=["notifications"])
async def get_preferences(principal: CurrentUser, deps: Deps) -> PreferencesPublic:
    return PreferencesPublic.model_validate(await preferences.get(principal.user_id, deps=deps))


@router.put("/notifications/preferences", tags=["notifications"])
async def put_preferences(
    body: PreferencesIn, principal: CurrentUser, deps: Deps
) -> PreferencesPublic:
    saved = await preferences.put(principal.user_id, body, deps=deps)
    return PreferencesPublic.model_validate(saved)


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, tags=["webhooks"])
async def register_webhook(body: WebhookIn, principal: CurrentUser, deps: Deps) -> WebhookCreated:
    """Register an endpoint for order events; the answer holds its signing secret,
    which is never shown again."""
    return WebhookCreated.model_validate(
        await webhooks.register(principal.user_id, body, deps=deps)
    )


@router.get("/webhooks", tags=["webhooks"])
async def list_webhooks(principal: CurrentUser, deps: Deps) -> Items[WebhookPublic]:
    found = await webhooks.list_own(principal.user_id, deps=deps)
    return Items[WebhookPublic].model_validate({"items": found})


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["webhooks"])
async def delete_webhook(webhook_id: UUID, principal: CurrentUser, deps: Deps) -> Response:
    await webhooks.remove(principal.user_id, webhook_id, deps=deps)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries", tags=["webhooks"])
async def webhook_deliveries(
    webhook_id: UUID,
    principal: CurrentUser,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Items[WebhookDelivery]:
    items = await webhooks.deliveries(principal.user_id, webhook_id, limit=limit, deps=deps)
    return Items[WebhookDelivery].model_validate({"items": items})


@router.get("/notifications/admin/deliveries", tags=["operations"])
async def list_deliveries(
    _: AdminUser,
    deps: Deps,
    delivery_status: Annotated[str | None, Query(alias="status", pattern=r"^[a-z]{1,16}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Items[DeliveryPublic]:
    found = await deliveries.list_deliveries(delivery_status, limit, deps=deps)
    return Items[DeliveryPublic].model_validate({"items": found})


@router.post(
    "/notifications/admin/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["operations"],
)
async def retry_delivery(delivery_id: UUID, _: AdminUser, deps: Deps) -> RetryScheduled:
    await deliveries.retry_dead(delivery_id, deps=deps)
    return RetryScheduled(status=DeliveryStatus.PENDING)
