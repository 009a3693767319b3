"""Events of the ``auth.users`` topic, keyed by user id.

The verification and reset tokens travel in the events because notify must put
them in the mail; they are single-use, short-lived, and only their hashes are
stored by auth.
"""

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from tenx_common.events import Event

TOPIC = "auth.users"


class UserEvent(Event):
    TOPIC: ClassVar[str] = TOPIC
    user_id: UUID

    def aggregate_id(self) -> str:
        return str(self.user_id)


class UserRegistered(UserEvent):
    TYPE: ClassVar[str] = "tenx.auth.user.registered.v1"
    email: str
    name: str
    verification_token: str
    verification_expires_at: datetime


class EmailVerified(UserEvent):
    TYPE: ClassVar[str] = "tenx.auth.user.email_verified.v1"


class PasswordResetRequested(UserEvent):
    TYPE: ClassVar[str] = "tenx.auth.user.password_reset_requested.v1"
    email: str
    reset_token: str
    expires_at: datetime


class AccountDeletionRequested(UserEvent):
    """Starts the erasure saga: each service erases the user's data and replies."""

    TYPE: ClassVar[str] = "tenx.auth.user.account_deletion_requested.v1"
    deletion_id: UUID


class AccountDeleted(UserEvent):
    """Every service has erased the user's data and auth has deleted the credentials."""

    TYPE: ClassVar[str] = "tenx.auth.user.account_deleted.v1"
    deletion_id: UUID
