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
Authorizations that arrive together are written in one transaction (a group
commit); each still gets its own key's record.
"""

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, Text, any_, bindparam, select, update
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
from tenx_common.loops.group_commit import GroupCommit

AUTHORIZED = "authorized"
DECLINED = "declined"
VOIDED = "voided"


@dataclass(eq=False, slots=True)
class _Request:
    """An authorization waiting for its batch; ``found`` is the ledger's record."""

    record: dict[str, Any]
    found: Any = None


class SandboxPayments:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # Authorizations that arrive together are written in one transaction
        # (as a processor batches its ledger writes); each answers on its own.
        self._authorizations: GroupCommit[_Request] = GroupCommit(self._authorize_together)

    async def authorize(
        self, *, idempotency_key: str, amount_cents: int, currency: str, payment_method: str
    ) -> Authorization:
        if payment_method == NEVER_ANSWER:
            await asyncio.Event().wait()  # until the caller's timeout cancels it
        approved = payment_method == APPROVE
        now = datetime.now(UTC)
        request = _Request(
            {
                "id": uuid.uuid4(),
                "idempotency_key": idempotency_key,
                "payment_method": payment_method,
                "amount_cents": amount_cents,
                "currency": currency,
                "status": AUTHORIZED if approved else DECLINED,
                "decline_code": None if approved else _decline_code(payment_method),
                "created_at": now,
                "updated_at": now,
            }
        )
        await self._authorizations.submit(request)
        payment = request.found
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

    async def _authorize_together(self, requests: Sequence[_Request]) -> list[bool]:
        """The first record under each key, for every request, in one statement
        (in key order, so two batches never wait on each other's keys), then
        each key's record, read in the same transaction (a concurrent first one
        has committed: ON CONFLICT waited for it)."""
        keys = sorted({r.record["idempotency_key"] for r in requests})
        async with self._sessions() as session:
            connection = await session.connection()
            records = sorted((r.record for r in requests), key=lambda r: r["idempotency_key"])
            await connection.execute(_FIRSTS, records)
            found = {
                row.idempotency_key: row
                for row in await connection.execute(_BY_KEYS, {"keys": keys})
            }
            await session.commit()
        for request in requests:
            request.found = found[request.record["idempotency_key"]]
        return [True] * len(requests)

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
# RETURNING makes SQLAlchemy send a batch's records as one multi-row INSERT.
_FIRSTS = _FIRST.returning(_LEDGER.c.id)
_BY_KEYS = select(_LEDGER).where(
    _LEDGER.c.idempotency_key == any_(bindparam("keys", type_=ARRAY(Text)))
)


async def _record_first(session: AsyncSession, idempotency_key: str, **values: Any) -> None:
    """The first record under a key wins; later ones under it change nothing."""
    connection = await session.connection()
    await connection.execute(
        _FIRST,
        {"id": uuid.uuid4(), "idempotency_key": idempotency_key, **values},
    )


def _decline_code(payment_method: str) -> str:
    return "card_declined" if payment_method == DECLINE else "unknown_payment_method"
