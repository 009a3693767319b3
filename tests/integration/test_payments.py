"""The sandbox payment provider on the real database: its three cards, one
authorization per idempotency key, and voids that also stop late authorizations."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenx_api.adapters.orm import SandboxPayment
from tenx_api.adapters.payments import SandboxPayments
from tenx_api.domain.payments import (
    APPROVE,
    DECLINE,
    NEVER_ANSWER,
    IdempotencyConflictError,
)
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine


@pytest.fixture
async def sessions(api_settings: ApiSettings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = primary_engine(api_settings, pool_size=20)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def ledger(sessions: async_sessionmaker[AsyncSession], key: str) -> list[SandboxPayment]:
    async with sessions() as session:
        rows = await session.scalars(
            select(SandboxPayment).where(SandboxPayment.idempotency_key == key)
        )
        return list(rows)


async def test_the_three_cards(sessions: async_sessionmaker[AsyncSession]) -> None:
    provider = SandboxPayments(sessions)
    approved = await provider.authorize(
        idempotency_key=str(uuid.uuid4()), amount_cents=500, currency="EUR", payment_method=APPROVE
    )
    assert approved.approved
    assert approved.decline_code is None
    declined = await provider.authorize(
        idempotency_key=str(uuid.uuid4()), amount_cents=500, currency="EUR", payment_method=DECLINE
    )
    assert not declined.approved
    assert declined.decline_code == "card_declined"
    unknown = await provider.authorize(
        idempotency_key=str(uuid.uuid4()),
        amount_cents=500,
        currency="EUR",
        payment_method="pm_card_nonsense",
    )
    assert unknown.decline_code == "unknown_payment_method"
    key = str(uuid.uuid4())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await provider.authorize(
                idempotency_key=key, amount_cents=500, currency="EUR", payment_method=NEVER_ANSWER
            )
    assert await ledger(sessions, key) == []


async def test_one_authorization_per_key_however_many_calls(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    provider = SandboxPayments(sessions)
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(
            provider.authorize(
                idempotency_key=key, amount_cents=1200, currency="EUR", payment_method=APPROVE
            )
            for _ in range(50)
        )
    )
    assert {a.id for a in answers} == {answers[0].id}
    assert all(a.approved for a in answers)
    assert len(await ledger(sessions, key)) == 1
    with pytest.raises(IdempotencyConflictError):
        await provider.authorize(
            idempotency_key=key, amount_cents=9999, currency="EUR", payment_method=APPROVE
        )


async def test_a_void_releases_once_and_stops_a_late_authorization(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    provider = SandboxPayments(sessions)
    key = str(uuid.uuid4())
    await provider.authorize(
        idempotency_key=key, amount_cents=700, currency="EUR", payment_method=APPROVE
    )
    await provider.void(idempotency_key=key)
    await provider.void(idempotency_key=key)
    [payment] = await ledger(sessions, key)
    assert payment.status == "voided"
    assert payment.voided_at is not None
    again = await provider.authorize(
        idempotency_key=key, amount_cents=700, currency="EUR", payment_method=APPROVE
    )
    assert not again.approved

    # A timed-out authorization is voided before it ever lands: it can never land later.
    late = str(uuid.uuid4())
    await provider.void(idempotency_key=late)
    answer = await provider.authorize(
        idempotency_key=late, amount_cents=700, currency="EUR", payment_method=APPROVE
    )
    assert not answer.approved
    async with sessions() as session:
        voids = await session.scalar(
            select(func.count())
            .select_from(SandboxPayment)
            .where(
                SandboxPayment.idempotency_key.in_([key, late]),
                SandboxPayment.voided_at.is_not(None),
            )
        )
    assert voids == 2


class Counting:
    """The provider's sessions, counting the transactions it opens."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.opened = 0

    def __call__(self) -> AsyncSession:
        self.opened += 1
        return self.sessions()


async def authorize_all(provider: SandboxPayments, keys: list[str], cards: list[str]) -> list[Any]:
    return await asyncio.gather(
        *(
            provider.authorize(
                idempotency_key=key, amount_cents=100 + n, currency="EUR", payment_method=card
            )
            for n, (key, card) in enumerate(zip(keys, cards, strict=True))
        ),
        return_exceptions=True,
    )


async def test_authorizations_that_arrive_together_share_a_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    counting = Counting(sessions)
    provider = SandboxPayments(counting)  # type: ignore[arg-type]
    keys = [str(uuid.uuid4()) for _ in range(20)]

    answers = await authorize_all(provider, keys, [APPROVE] * 10 + [DECLINE] * 10)

    assert [a.approved for a in answers] == [True] * 10 + [False] * 10
    assert len({a.id for a in answers}) == 20
    assert counting.opened <= 2  # the first call's batch, then the 19 that queued behind it
    for n, key in enumerate(keys):
        assert [r.amount_cents for r in await ledger(sessions, key)] == [100 + n]


async def test_a_record_that_fails_holds_back_none_of_its_batch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    provider = SandboxPayments(sessions)
    keys = [str(uuid.uuid4()) for _ in range(20)]
    cards = [APPROVE] * 20
    cards[7] = "pm_card_\x00"  # PostgreSQL's text refuses NUL: that record fails

    answers = await authorize_all(provider, keys, cards)

    assert isinstance(answers[7], Exception)
    assert all(a.approved for n, a in enumerate(answers) if n != 7)
    for n, key in enumerate(keys):  # as if each had been authorized on its own
        expected = [] if n == 7 else [100 + n]
        assert [r.amount_cents for r in await ledger(sessions, key)] == expected
