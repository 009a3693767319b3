"""The local sandbox payment provider.

It stands in for a card processor: ``pm_card_visa`` is approved,
``pm_card_chargeDeclined`` (and any token it does not know) is declined, and
``pm_card_timeout`` never answers. Its ledger is the ``sandbox_payments`` table,
written in its own transactions as an outside processor's records would be, so
tests and the chaos run can count authorizations and voids.

A decline says why: ``card_declined`` for the declining card,
``unknown_payment_method`` for a token it does not know. The ledger holds one
record per idempotency key, and the first one wins: a repeated authorization
answers the first result, and the same key with another amount, currency or
card raises ``IdempotencyConflictError``. A void that comes first leaves a
voided record, so a late authorization under that key is refused.
"""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_api.adapters.orm import Base, SandboxPayment
from tenx_api.domain.payments import (
    APPROVE,
    DECLINE,
    NEVER_ANSWER,
    Authorization,
    IdempotencyConflictError,
)

AUTHORIZED = "authorized"
DECLINED = "declined"
VOIDED = "voided"


class SandboxPayments:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def authorize(
        self, *, idempotency_key: str, amount_cents: int, currency: str, payment_method: str
    ) -> Authorization:
        if payment_method == NEVER_ANSWER:
            await asyncio.Event().wait()  # until the caller's timeout cancels it
        approved = payment_method == APPROVE
        now = datetime.now(UTC)
        async with self._sessions() as session:
            await _record_first(
                session,
                idempotency_key,
                payment_method=payment_method,
                amount_cents=amount_cents,
                currency=currency,
                status=AUTHORIZED if approved else DECLINED,
                decline_code=None if approved else _decline_code(payment_method),
                created_at=now,
                updated_at=now,
            )
            # Read in the same transaction (the record is visible to it, and a
            # concurrent first one has committed: ON CONFLICT waited for it).
            connection = await session.connection()
            payment = (await connection.execute(_BY_KEY, {"key": idempotency_key})).first()
            await session.commit()
        assert payment is not None
        if payment.status != VOIDED and (
            payment.payment_method,
            payment.amount_cents,
            payment.currency,
        ) != (payment_method, amount_cents, currency):
            raise IdempotencyConflictError(idempotency_key)
        return Authorization(
            id=str(payment.id),
            approved=payment.status == AUTHORIZED,
            decline_code=payment.decline_code,
        )

    async def void(self, *, idempotency_key: str) -> None:
        now = datetime.now(UTC)
        async with self._sessions() as session:
            # A void that comes first leaves a voided record, so a late
            # authorization under the same key finds it and is refused.
            await _record_first(
                session,
                idempotency_key,
                payment_method="",
                amount_cents=0,
                currency="",
                status=VOIDED,
                decline_code="voided",
                created_at=now,
                updated_at=now,
                voided_at=now,
            )
            await session.execute(
                update(SandboxPayment)
                .where(
                    SandboxPayment.idempotency_key == idempotency_key,
                    SandboxPayment.voided_at.is_(None),
                )
                .values(
                    status=VOIDED,
                    voided_at=now,
                    updated_at=now,
                )
            )
            await session.commit()


# Built once, run as Core on the session's connection.
_LEDGER = Base.metadata.tables["sandbox_payments"]
_FIRST = insert(_LEDGER).on_conflict_do_nothing(index_elements=[_LEDGER.c.idempotency_key])
_BY_KEY = select(_LEDGER).where(_LEDGER.c.idempotency_key == bindparam("key"))


async def _record_first(session: AsyncSession, idempotency_key: str, **values: Any) -> None:
    """The first record under a key wins; later ones under it change nothing."""
    connection = await session.connection()
    await connection.execute(
        _FIRST,
        {"id": uuid.uuid4(), "idempotency_key": idempotency_key, **values},
    )


def _decline_code(payment_method: str) -> str:
    return "card_declined" if payment_method == DECLINE else "unknown_payment_method"
