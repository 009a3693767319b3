"""The leased-work engine's decisions on fakes at its ports: what a claim and a
fence say in SQL, how outcomes are group-committed (and recorded one by one
when their batch fails), how many attempts run at once, what is counted; and
the saga runner's pure decisions built on it."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from sqlalchemy import Column, Integer, MetaData, Table, Text, Uuid
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.sql.elements import ClauseElement

from tenx_common.loops import GroupCommit
from tenx_common.work import (
    LeasedLoop,
    Saga,
    SagaStatus,
    Tally,
    Transition,
    claim_due,
    fenced,
    leased,
    tally_counter,
)
from tenx_common.work.saga import SagaRunner, failed_step, saga_tables, transition_values

sagas_table, saga_steps_table = saga_tables(MetaData())
jobs = Table(
    "jobs",
    MetaData(),
    Column("id", Uuid, primary_key=True),
    Column("status", Text),
    Column("attempts", Integer),
)


def sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=PGDialect()))  # type: ignore[no-untyped-call]


def test_a_claim_is_one_statement_that_skips_rows_other_loops_hold() -> None:
    statement = claim_due(
        jobs,
        due=[jobs.c.status == "pending"],
        order_by=jobs.c.id,
        limit=20,
        lease={"attempts": jobs.c.attempts + 1},
    )

    text = sql(statement)
    assert text.startswith("WITH due AS")
    assert "FOR UPDATE SKIP LOCKED" in text
    assert "UPDATE jobs SET attempts=(jobs.attempts + " in text
    assert "RETURNING jobs.id, jobs.status, jobs.attempts" in text


def test_an_outcome_is_fenced_on_every_value_its_claim_holds() -> None:
    statement = fenced(
        jobs, row_id=uuid.uuid4(), claimed={"status": "pending", "attempts": 3}
    ).values(status="done")

    text = sql(statement)
    assert "WHERE jobs.id = " in text
    assert "jobs.status = " in text
    assert "jobs.attempts = " in text
    assert text.endswith("RETURNING jobs.id")


class Ledger:
    """A fake recording transaction: each call is one transaction."""

    def __init__(
        self, *, fenced_off: frozenset[str] = frozenset(), broken: frozenset[str] = frozenset()
    ) -> None:
        self.fenced_off = fenced_off
        self.broken = broken
        self.transactions: list[list[str]] = []
        self.seen: list[str] = []  # every item a transaction was given
        self.expected = 0
        self.all_seen = asyncio.Event()

    async def record(self, batch: Sequence[str]) -> list[bool]:
        self.transactions.append(list(batch))
        self.seen.extend(batch)
        if len(self.seen) >= self.expected:
            self.all_seen.set()
        if self.broken & set(batch):
            raise RuntimeError("the state change failed")
        return [item not in self.fenced_off for item in batch]


async def test_outcomes_that_finish_together_are_recorded_in_one_transaction() -> None:
    ledger = Ledger(fenced_off=frozenset("b"))
    commits = GroupCommit(ledger.record)

    recorded = await asyncio.gather(*(commits.submit(item) for item in "abc"))

    assert recorded == [True, False, True]
    assert ledger.transactions == [["a", "b", "c"]]


async def test_a_batch_holds_at_most_its_size() -> None:
    ledger = Ledger()
    commits = GroupCommit(ledger.record, batch_size=2)

    await asyncio.gather(*(commits.submit(item) for item in "abcde"))

    assert ledger.transactions == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_failing_batch_is_recorded_item_by_item() -> None:
    ledger = Ledger(broken=frozenset("b"))
    commits = GroupCommit(ledger.record)

    recorded = await asyncio.gather(
        *(commits.submit(item) for item in "abc"), return_exceptions=True
    )

    assert recorded[0] is True
    assert isinstance(recorded[1], RuntimeError)
    assert recorded[2] is True
    assert ledger.transactions == [["a", "b", "c"], ["a"], ["b"], ["c"]]


@contextlib.asynccontextmanager
async def no_wakeups(wake: asyncio.Event) -> AsyncIterator[None]:
    yield


class Queue:
    """Due work as a list, claimed in order; attempts wait for a gate."""

    def __init__(self, items: Sequence[str]) -> None:
        self.due = list(items)
        self.running = 0
        self.most_at_once = 0
        self.limits: list[int] = []
        self.gate = asyncio.Event()
        self.full = asyncio.Event()  # as many attempts run as may

    async def claim(self, limit: int) -> list[str]:
        self.limits.append(limit)
        claimed, self.due = self.due[:limit], self.due[limit:]
        return claimed


def loop_over(queue: Queue, ledger: Ledger, *, counts: str = "recorded") -> LeasedLoop[str, str]:
    async def attempt(item: str) -> None:
        queue.running += 1
        queue.most_at_once = max(queue.most_at_once, queue.running)
        if queue.running == loop.concurrency:
            queue.full.set()
        await queue.gate.wait()
        queue.running -= 1
        await loop.record(item)

    loop: LeasedLoop[str, str] = LeasedLoop(
        name="test loop",
        claim=queue.claim,
        attempt=attempt,
        record_batch=ledger.record,
        wakeups=no_wakeups,
        concurrency=3,
        poll_interval_s=0.01,
        tally=Tally(
            tally_counter("tenx_test_outcomes", "Test outcomes", ["item"]),
            labels=lambda item: (item,),
            counts=counts,  # type: ignore[arg-type]
        ),
    )
    return loop


async def settled(ledger: Ledger, count: int) -> None:
    ledger.expected = count
    async with asyncio.timeout(3):
        await ledger.all_seen.wait()


def counted(loop: LeasedLoop[str, str]) -> dict[str, float]:
    [metric] = loop.collect()
    return {s.labels["item"]: s.value for s in metric.samples if s.name.endswith("_total")}


async def test_no_more_attempts_run_at_once_than_the_concurrency() -> None:
    queue, ledger = Queue("abcdefg"), Ledger()
    loop = loop_over(queue, ledger)
    task = asyncio.create_task(loop.run())

    async with asyncio.timeout(3):
        await queue.full.wait()
    assert queue.limits[0] == 3
    queue.gate.set()
    await settled(ledger, 7)
    loop.stopping.set()
    await task

    assert queue.most_at_once == 3
    assert sorted(ledger.seen) == list("abcdefg")


async def test_a_loop_that_keeps_up_claims_what_follows_a_wake_up_together() -> None:
    queue, ledger = Queue(""), Ledger()
    queue.gate.set()
    loop = loop_over(queue, ledger)
    loop.poll_interval_s, loop.linger_s = 0.05, 0.3
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.02)
    assert queue.limits == [3]  # its first claim found nothing
    queue.due.append("a")
    await asyncio.sleep(0.1)  # woken (here by its poll), it lingers
    queue.due.append("b")
    await settled(ledger, 2)
    loop.stopping.set()
    await task

    assert ledger.transactions == [["a", "b"]]  # one claim, one recording

    queue, ledger = Queue("abcdefg"), Ledger()  # behind: no lingering between claims
    loop = loop_over(queue, ledger)
    loop.linger_s = 30
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(3):
        await queue.full.wait()
    queue.gate.set()
    await settled(ledger, 7)
    loop.stopping.set()
    await task


async def test_the_tally_counts_recorded_outcomes_or_every_attempt() -> None:
    for counts, expected in (("recorded", {"a": 1.0}), ("attempts", {"a": 1.0, "b": 1.0})):
        queue, ledger = Queue("ab"), Ledger(fenced_off=frozenset("b"))
        queue.gate.set()
        loop = loop_over(queue, ledger, counts=counts)
        task = asyncio.create_task(loop.run())
        await settled(ledger, 2)
        loop.stopping.set()
        await task

        assert counted(loop) == expected


async def test_a_claim_that_fails_restarts_the_loop() -> None:
    queue, ledger = Queue("a"), Ledger()
    queue.gate.set()
    failures = [RuntimeError("the database went away")]
    claim = queue.claim

    async def flaky(limit: int) -> list[str]:
        if failures:
            raise failures.pop()
        return await claim(limit)

    loop = loop_over(queue, ledger)
    loop.claim = flaky
    task = asyncio.create_task(loop.run())
    await settled(ledger, 1)
    loop.stopping.set()
    await task

    assert ledger.seen == ["a"]


class Outage:
    """A database that refuses every transaction for its first ``refusals``."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.transactions = 0

    async def record(self, batch: Sequence[str]) -> list[bool]:
        self.transactions += 1
        if self.transactions <= self.refusals:
            raise ConnectionError("no primary")
        return [True for _ in batch]


def recording_loop(outage: Outage, *, record_retry_s: float) -> LeasedLoop[str, str]:
    return LeasedLoop(
        name="test loop",
        claim=Queue("").claim,
        attempt=lambda item: asyncio.sleep(0),
        record_batch=outage.record,
        wakeups=no_wakeups,
        concurrency=1,
        poll_interval_s=0.01,
        record_retry_s=record_retry_s,
    )


async def test_an_outcome_the_database_refuses_is_recorded_once_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leased, "RECORD_RETRY_PAUSE_S", 0.01)
    outage = Outage(refusals=6)  # three tries: each a batch and its item alone

    assert await recording_loop(outage, record_retry_s=5).record("sent") is True
    assert outage.transactions == 7


async def test_an_outcome_is_tried_again_no_longer_than_record_retry_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leased, "RECORD_RETRY_PAUSE_S", 0.01)
    outage = Outage(refusals=1000)
    with pytest.raises(ConnectionError):
        await recording_loop(outage, record_retry_s=0).record("sent")
    assert outage.transactions == 2  # the batch and its item alone, once

    outage = Outage(refusals=1000)
    with pytest.raises(ConnectionError):
        async with asyncio.timeout(2):
            await recording_loop(outage, record_retry_s=0.1).record("sent")
    assert outage.transactions > 2


def saga(*, attempts: int = 1) -> Saga:
    return Saga(
        id=uuid.uuid4(),
        kind="order",
        status=SagaStatus.RUNNING,
        step="pay",
        attempts=attempts,
        reason=None,
    )


def test_a_step_that_raised_runs_again_later_each_time() -> None:
    delays = [failed_step(saga(attempts=n), RuntimeError("boom")).retry_in_s for n in range(1, 8)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    transition = failed_step(saga(), RuntimeError("boom"))
    assert (transition.outcome, transition.status, transition.step) == ("error", "running", "pay")
    assert transition.detail == "RuntimeError: boom"


def test_a_repeated_step_keeps_counting_its_attempts_and_a_new_one_starts_at_zero() -> None:
    claimed = saga(attempts=3)
    again = Transition(outcome="timeout", status=SagaStatus.RUNNING, step="pay", retry_in_s=2.0)
    onwards = Transition(outcome="declined", status=SagaStatus.COMPENSATING, step="void")

    assert transition_values(claimed, again)["attempts"] == 3
    assert transition_values(claimed, again)["sets_error"] is True
    assert transition_values(claimed, again)["error"] is None
    assert transition_values(claimed, onwards)["attempts"] == 0
    assert transition_values(claimed, onwards)["sets_error"] is False


def test_a_saga_that_ends_is_never_due_again() -> None:
    done = Transition(outcome="approved", status=SagaStatus.COMPLETED, step="done", reason="ok")

    values = transition_values(saga(), done)

    assert values["due_in_s"] is None
    assert values["reason"] == "ok"


def test_a_retry_is_due_after_its_delay() -> None:
    again = Transition(outcome="timeout", status=SagaStatus.RUNNING, step="pay", retry_in_s=2.5)

    assert transition_values(saga(), again)["due_in_s"] == 2.5
    onwards = Transition(outcome="declined", status=SagaStatus.COMPENSATING, step="void")
    assert transition_values(saga(), onwards)["due_in_s"] == 0.0


class ClaimConnection:
    """The claim's transaction: it returns ``rows`` for the claim statement."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.statements = 0

    async def execute(self, statement: object) -> list[Any]:
        self.statements += 1
        return self.rows


class ClaimEngine:
    def __init__(self, conn: ClaimConnection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[ClaimConnection]:
        yield self.conn


async def test_a_claimed_batch_gets_what_its_steps_need_in_one_read() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    rows = [
        SimpleNamespace(id=i, kind="order", status="running", step="pay", attempts=1,
                        reason=None, trace={})
        for i in ids
    ]  # fmt: skip
    conn = ClaimConnection(rows)
    loads: list[list[uuid.UUID]] = []

    async def load(connection: Any, sagas: Sequence[Saga]) -> dict[uuid.UUID, Any]:
        assert connection is conn  # in the claim's transaction
        loads.append([saga.id for saga in sagas])
        return {saga.id: f"order {n}" for n, saga in enumerate(sagas) if n != 1}

    runner = SagaRunner(
        engine=ClaimEngine(conn),  # type: ignore[arg-type]
        uow=lambda: None,  # type: ignore[arg-type,return-value]
        sagas=sagas_table,
        steps_log=saga_steps_table,
        steps={},
        lease_s=10,
        tracer=trace.get_tracer("test"),
        context=load,
    )

    claimed = await runner.claim(3)

    assert loads == [ids]
    assert [saga.context for saga in claimed] == ["order 0", None, "order 2"]
    assert conn.statements == 1  # the claim; the loader read the rest
