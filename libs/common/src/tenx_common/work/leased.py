"""Leased work: due rows of a table that any number of loops claim, act on and record.

A loop claims up to as many due rows as it has free slots, in one statement
that takes them ``FOR UPDATE SKIP LOCKED`` and leases them (moves their next
attempt past the attempt's deadline, counts the attempt): two loops never hold
one row, and a loop that dies leaves its rows to be claimed again when their
leases end. Each claim is acted on outside any transaction (it calls the
outside world), at most ``concurrency`` at once. Its outcome is recorded fenced
on the claim (the attempt it counted): when the row moved on meanwhile (its
lease ran out and another loop claimed it, or an operator changed it), the
stale outcome is dropped.

Recording is a group commit: the outcomes that finish while a recording
transaction runs are recorded together in the next one, so a busy loop commits
once per batch and an idle one at once; when a batch fails, each of its
outcomes is recorded on its own, so one that cannot be recorded does not hold
the others back. An outcome the database refuses outright (a failover: no
primary for some seconds) is tried again for ``record_retry_s``: the claim's
lease outlasts that, so the outcome lands before another loop could claim the
row and act on it a second time (a second email, say), and the fence drops it
if one did.

The loop wakes on a NOTIFY (``wakeups``), when an attempt ends, or after
``poll_interval_s`` as a fallback; a claim that fails restarts it after a pause.
While it keeps up (its last claim took less than it had room for), a
wake-up waits ``linger_s`` before it claims, so the rows of that moment are
claimed, attempted and recorded together: at a steady load below capacity
every NOTIFY would otherwise be a claim, an attempt and a recording
transaction for one row. A loop that is behind claims at once.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from prometheus_client import Counter
from prometheus_client.core import Metric
from sqlalchemy import ColumnElement, Table, Update, select, update

from tenx_common.loops.group_commit import GroupCommit
from tenx_common.loops.supervised import pause, supervised
from tenx_common.loops.wakeup import nap

log = logging.getLogger(__name__)

C = TypeVar("C")  # a claim: a leased row as its attempt holds it (its fence included)
D = TypeVar("D")  # a finished attempt, waiting to be recorded

RECORD_BATCH = 64  # outcomes recorded in one transaction, at most
RECORD_RETRY_PAUSE_S = 0.25  # the first pause before a refused recording is tried again
LINGER_S = 0.05  # how long a wake-up waits for the rows that follow it, while keeping up

# Sets the event on every wake-up while the block runs (``tenx_common.loops.listening``).
Wakeups = Callable[[asyncio.Event], AbstractAsyncContextManager[None]]


def claim_due(
    table: Table,
    *,
    due: Sequence[ColumnElement[bool]],
    order_by: ColumnElement[Any],
    limit: int,
    lease: Mapping[str, Any],
) -> Update:
    """One statement that leases up to ``limit`` rows of ``table`` matching
    ``due`` (the oldest first, rows another loop holds skipped), sets ``lease``
    on them and returns them as they are after it."""
    picked = (
        select(table.c.id)
        .where(*due)
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    return update(table).where(table.c.id == picked.c.id).values(**lease).returning(table)


def fenced(table: Table, *, row_id: Any, claimed: Mapping[str, Any]) -> Update:
    """An update of row ``row_id`` that matches only while the row still holds
    the ``claimed`` values (its attempt's fence); it returns the id when it did."""
    fence = [table.c[name] == value for name, value in claimed.items()]
    return update(table).where(table.c.id == row_id, *fence).returning(table.c.id)


@dataclass(frozen=True, slots=True)
class Tally(Generic[D]):
    """A counter of finished attempts, labelled by ``labels`` of each: every
    attempt handed to recording (``attempts``), or only those recorded."""

    counter: Counter
    labels: Callable[[D], Sequence[str]]
    counts: Literal["attempts", "recorded"] = "recorded"


def tally_counter(name: str, documentation: str, labels: Sequence[str]) -> Counter:
    """A counter in no registry: its loop is the collector the app registers."""
    return Counter(name, documentation, labels, registry=None)


@dataclass(eq=False)
class LeasedLoop(Generic[C, D]):
    """Claims due rows and runs an attempt on each, ``concurrency`` at most.

    ``attempt`` acts on a claim outside any transaction and hands its outcome to
    ``record``; ``record_batch`` writes a batch of outcomes in one transaction,
    each fenced on its claim."""

    name: str  # in its log lines
    claim: Callable[[int], Awaitable[Sequence[C]]]  # lease up to n due rows, one statement
    attempt: Callable[[C], Awaitable[None]]
    record_batch: Callable[[Sequence[D]], Awaitable[list[bool]]]
    wakeups: Wakeups
    concurrency: int
    poll_interval_s: float
    tally: Tally[D] | None = None
    batch_size: int = RECORD_BATCH
    drain_s: float = 10.0  # how long a stopping loop waits for its attempts
    record_retry_s: float = 0.0  # how long a refused recording is tried again
    linger_s: float = LINGER_S
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _commits: GroupCommit[D] = field(init=False)

    def __post_init__(self) -> None:
        self._commits = GroupCommit(self.record_batch, batch_size=self.batch_size)

    async def run(self) -> None:
        """Claim and attempt until ``stopping``; then wait ``drain_s`` at most for
        the attempts under way (one cut short is claimed again when its lease ends)."""
        in_flight: set[asyncio.Task[None]] = set()

        async def claiming() -> None:
            async with self.wakeups(self._wake):
                while not self.stopping.is_set():
                    self._wake.clear()
                    free = self.concurrency - len(in_flight)
                    claims = await self.claim(free) if free > 0 else []
                    for claim in claims:
                        task = asyncio.create_task(self._attempt(claim))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                        task.add_done_callback(lambda _: self._wake.set())
                    await nap(self._wake, self.stopping, timeout_s=self.poll_interval_s)
                    if len(claims) < free:  # keeping up: the next rows come together
                        await pause(self.stopping, self.linger_s)

        await supervised(
            claiming,
            stopping=self.stopping,
            what=f"{self.name}: claiming failed; retrying in 1 s",
            logger=log,
        )
        if in_flight:
            await asyncio.wait(in_flight, timeout=self.drain_s)

    async def record(self, outcome: D) -> bool:
        """Record ``outcome`` (group-committed); False when its row moved on."""
        tally = self.tally
        if tally is not None and tally.counts == "attempts":
            tally.counter.labels(*tally.labels(outcome)).inc()
        recorded = await self._record_retrying(outcome)
        if recorded and tally is not None and tally.counts == "recorded":
            tally.counter.labels(*tally.labels(outcome)).inc()
        return recorded

    async def _record_retrying(self, outcome: D) -> bool:
        deadline = time.monotonic() + self.record_retry_s
        pause = RECORD_RETRY_PAUSE_S
        while True:
            try:
                return await self._commits.submit(outcome)
            except Exception:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("%s: recording an outcome failed; retrying in %.2f s", self.name, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, 2.0)

    def collect(self) -> Iterator[Metric]:
        if self.tally is not None:
            yield from self.tally.counter.collect()

    async def _attempt(self, claim: C) -> None:
        try:
            await self.attempt(claim)
        except Exception:  # the claim's lease ends and it is attempted again
            log.exception("%s: an attempt failed", self.name)
