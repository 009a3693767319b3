"""The payment provider port: what the order saga needs from a card processor.

Every call carries an idempotency key (the order id): a provider answers a
repeated call with the first call's result, so a retry never charges twice.
"""

from dataclasses import dataclass
from typing import Protocol

# The tokens of the local sandbox provider (PLATFORM.md): approve, decline, never answer.
APPROVE = "pm_card_visa"
DECLINE = "pm_card_chargeDeclined"
NEVER_ANSWER = "pm_card_timeout"


@dataclass(frozen=True, slots=True)
class Authorization:
    id: str
    approved: bool
    decline_code: str | None = None


class IdempotencyConflictError(Exception):
    """The key was used before with a different amount, currency or card."""


class PaymentProvider(Protocol):
    async def authorize(
        self, *, idempotency_key: str, amount_cents: int, currency: str, payment_method: str
    ) -> Authorization:
        """Hold ``amount_cents`` on the card. May never return: callers set a timeout."""
        ...

    async def void(self, *, idempotency_key: str) -> None:
        """Release the hold made under ``idempotency_key``; also when none was made
        (a timed-out authorization), so that a late one can never land."""
        ...
