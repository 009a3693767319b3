"""Webhooks: what a user registers, how deliveries are signed (Standard
Webhooks), and which targets are refused (SSRF).

Signing: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``<webhook-id>.<webhook-timestamp>.<body>`` with the secret's bytes (the base64
after ``whsec_``). ``webhook-id`` is the delivery's id, the same on every retry;
the timestamp and signature are made anew for each attempt.
"""

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

EVENTS = ("order.confirmed", "order.cancelled")
EventName = Literal["order.confirmed", "order.cancelled", "*"]


def _unique(events: list[str]) -> list[str]:
    if len(set(events)) != len(events):
        raise ValueError("each event once")
    return events


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
    events: Annotated[list[EventName], Field(min_length=1, max_length=3), AfterValidator(_unique)]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def subscribed(events: list[str], name: str) -> bool:
    return "*" in events or name in events


class TargetNotAllowedError(Exception):
    """The URL points at this network (private, loopback, link-local...)."""


async def check_target(url: str) -> None:
    """Refuse a URL whose host resolves to an address a webhook must not reach.
    Called when a webhook is registered and before each attempt (the name may
    resolve elsewhere by then); redirects are never followed."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise TargetNotAllowedError("credentials in the URL")
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
    except OSError as exc:
        raise TargetNotAllowedError(f"{host} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise TargetNotAllowedError(f"{host} resolves to {address}, which is not public")
