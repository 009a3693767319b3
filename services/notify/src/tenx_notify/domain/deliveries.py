"""Where a delivery stands, and what became of one attempt to send it."""

from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at ``next_attempt_at``
    SENT = "sent"
    DEAD = "dead"  # given up: an operator may send it again
    AWAITING_RECIPIENT = "awaiting_recipient"  # an email whose address has not arrived yet


class AttemptOutcome(StrEnum):
    SENT = "sent"
    RETRIED = "retried"
    DEAD = "dead"
