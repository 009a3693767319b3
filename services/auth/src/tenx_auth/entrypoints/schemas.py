"""What the auth HTTP API returns."""

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class UserPublic(BaseModel):
    id: UUID
    email: str
    name: str
    roles: list[str]
    email_verified: bool


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (the scheme, RFC 6750)
    expires_in: int
    refresh_token: str


class DeletionReplyOut(BaseModel):
    service: str
    erased_at: datetime


class DeletionStatus(BaseModel):
    """The account-deletion saga: ``requested`` until every service has replied
    (``waiting_for`` names those that have not), then ``completed``."""

    deletion_id: UUID
    status: str
    requested_at: datetime
    completed_at: datetime | None
    requests: int
    replies: list[DeletionReplyOut]
    waiting_for: list[str]


class KeyRotated(BaseModel):
    kid: str
    activates_at: datetime


class JwkSet(BaseModel):
    """The public keys that verify auth's tokens (RFC 7517)."""

    keys: list[dict[str, Any]]  # each a JWK, its members per its key type
