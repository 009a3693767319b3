"""Orchestrated sagas, persisted per step.

A saga is a row of ``sagas``: its kind, its status (``running``, then
``completed``; or ``compensating``, then ``compensated``; ``failed`` when a
compensation gives up), the step it is at, the attempts of that step, and the
trace context of the request that started it. The row is written in the
transaction that starts the saga, so a saga exists exactly when its cause
committed. Every attempt of a step is logged in ``saga_steps``.

The runner (in a service's worker process, any number of them) claims a due
saga with ``FOR UPDATE SKIP LOCKED`` and leases it by moving
``next_attempt_at`` past the step's deadline, then runs the step outside any
transaction (a step calls the outside world, e.g. a payment provider, always
under an idempotency key). The step returns a ``Transition``, which is written
in one transaction together with the state change it carries, fenced on the
status, step and attempt the runner claimed: when something else moved the
saga meanwhile (a customer's cancel), the stale result is dropped. A runner
that dies mid-step leaves the lease to expire; the step is then run again by
any runner, which is how every unfinished saga resumes after a restart.

The runner is leased work (``tenx_common.work.leased``): it claims a batch of
due sagas in one statement (and, with a ``context`` loader, reads what their
steps need for the whole batch in the claim's transaction), and records the
transitions that finish together in one transaction, each fenced on its own
claim and written under its attempt's trace. A step that raises (a bug, an
outage) runs again after 1 s, doubling to 30 s. Each attempt runs under a
span ``saga <kind> <step>`` whose parent is the request that started the saga,
so the events a step writes continue that trace.
``tenx_saga_transitions_total{kind,status}`` counts the recorded transitions.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import Status, StatusCode, Tracer
from prometheus_client.core import Metric
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    insert,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenx_common.data.uow import UnitOfWork
from tenx_common.loops.backoff import backoff_s
from tenx_common.loops.wakeup import listening
from tenx_common.work.leased import LeasedLoop, Tally, claim_due, fenced, tally_counter

log = logging.getLogger(__name__)


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"


ACTIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
CHANNEL = "sagas"


def saga_tables(metadata: MetaData) -> tuple[Table, Table]:
    sagas = Table(
        "sagas",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("kind", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("step", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("reason", Text),
        Column("last_error", Text),
        Column("trace", JSONB, nullable=False),
        Column("next_attempt_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index(
            "ix_sagas_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('running', 'compensating')"),
        ),
        Index("ix_sagas_status_created", "status", "created_at"),
    )
    steps = Table(
        "saga_steps",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("saga_id", Uuid, ForeignKey("sagas.id"), nullable=False),
        Column("step", Text, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("outcome", Text, nullable=False),
        Column("detail", Text),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True), nullable=False),
        Index("ix_saga_steps_saga", "saga_id", "id"),
    )
    return sagas, steps


@dataclass(frozen=True, slots=True)
class Saga:
    id: uuid.UUID
    kind: str
    status: str
    step: str
    attempts: int  # of this step, the current one included
    reason: str | None
    trace: dict[str, str] = field(default_factory=dict, compare=False)
    # What the runner read for this saga with its claim (``SagaRunner.context``):
    # its steps need not read it again, one transaction each.
    context: Any = field(default=None, compare=False)


# Reads, in the claim's transaction, what the claimed sagas' steps need: by saga id.
ContextLoader = Callable[[AsyncConnection, Sequence["Saga"]], Awaitable[Mapping[uuid.UUID, Any]]]


@dataclass(frozen=True, slots=True)
class Transition:
    """What a step's attempt led to. ``outcome`` and ``detail`` go to the step log;
    ``apply`` runs in the transaction that records the transition."""

    outcome: str
    status: str
    step: str
    retry_in_s: float | None = None  # the same step again, after this delay
    reason: str | None = None
    detail: str | None = None
    apply: Callable[[UnitOfWork], Awaitable[None]] | None = None


Step = Callable[[Saga], Awaitable[Transition]]


async def start_saga(
    uow: UnitOfWork, sagas: Table, *, saga_id: uuid.UUID, kind: str, step: str
) -> None:
    """Create a saga in the caller's transaction; runners wake at its commit."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    now = datetime.now(UTC)
    connection = await uow.session.connection()
    await connection.execute(
        insert(sagas),
        {
            "id": saga_id,
            "kind": kind,
            "status": SagaStatus.RUNNING,
            "step": step,
            "attempts": 0,
            "trace": carrier,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )
    uow.wake(CHANNEL)


async def divert(
    uow: UnitOfWork,
    sagas: Table,
    steps_log: Table,
    *,
    saga_id: uuid.UUID,
    only_from: tuple[str, ...],
    status: str,
    step: str,
    reason: str,
) -> bool:
    """In the caller's transaction, move a saga that is in one of ``only_from`` to
    ``status``/``step`` from the outside (a customer's cancel), logged as a step
    named after ``reason``; False when it was not in one of them. A step running
    meanwhile has its result dropped (the fence in ``SagaRunner.record``)."""
    now = datetime.now(UTC)
    moved = await uow.session.execute(
        update(sagas)
        .where(sagas.c.id == saga_id, sagas.c.status.in_(only_from))
        .values(
            status=status,
            step=step,
            attempts=0,
            reason=reason,
            next_attempt_at=now,
            updated_at=now,
        )
        .returning(sagas.c.id)
    )
    if moved.first() is None:
        return False
    await uow.session.execute(
        insert(steps_log).values(
            saga_id=saga_id,
            step="diverted",
            attempt=1,
            outcome=reason,
            started_at=now,
            finished_at=now,
        )
    )
    uow.wake(CHANNEL)
    return True


@dataclass(frozen=True, slots=True)
class _Pending:
    """A finished attempt waiting for its recording transaction."""

    saga: Saga
    transition: Transition
    started: datetime
    context: otel_context.Context  # the attempt's span, for the events it writes


@dataclass(eq=False)
class SagaRunner:
    """Sagas as leased work (``tenx_common.work.leased``): a claim is a saga at
    its step and attempt, an outcome the step's ``Transition``."""

    engine: AsyncEngine
    uow: Callable[[], UnitOfWork]
    sagas: Table
    steps_log: Table
    steps: Mapping[tuple[str, str], Step]  # (kind, step) -> the step
    lease_s: float  # how long an attempt may take before another runner retries it
    tracer: Tracer
    poll_interval_s: float = 1.0
    concurrency: int = 16
    listener: AsyncEngine | None = None  # LISTEN's connection (Engines.for_listening)
    context: ContextLoader | None = None  # one read for a claimed batch, not one per saga
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: LeasedLoop[Saga, _Pending] = field(init=False)

    def __post_init__(self) -> None:
        self._loop = LeasedLoop(
            name="saga runner",
            claim=self.claim,
            attempt=self.attempt,
            record_batch=self._record_together,
            wakeups=lambda wake: listening(self.listener or self.engine, CHANNEL, wake),
            concurrency=self.concurrency,
            poll_interval_s=self.poll_interval_s,
            tally=Tally(
                tally_counter(
                    "tenx_saga_transitions",
                    "Saga step results recorded, by kind and new status",
                    ["kind", "status"],
                ),
                labels=lambda pending: (pending.saga.kind, pending.transition.status),
            ),
            stopping=self.stopping,
        )

    async def run(self) -> None:
        """Run due sagas until ``stopping``; woken by NOTIFY, polling as a fallback."""
        await self._loop.run()

    async def claim(self, limit: int) -> list[Saga]:
        """Lease up to ``limit`` due sagas to this runner, in one statement."""
        table = self.sagas
        statement = claim_due(
            table,
            due=[table.c.status.in_(ACTIVE), table.c.next_attempt_at <= func.now()],
            order_by=table.c.next_attempt_at,
            limit=limit,
            lease={
                "attempts": table.c.attempts + 1,
                "next_attempt_at": func.now() + timedelta(seconds=self.lease_s),
                "updated_at": func.now(),
            },
        )
        async with self.engine.begin() as conn:
            claimed = [
                Saga(
                    id=row.id,
                    kind=row.kind,
                    status=row.status,
                    step=row.step,
                    attempts=row.attempts,
                    reason=row.reason,
                    trace=row.trace,
                )
                for row in await conn.execute(statement)
            ]
            if self.context is None or not claimed:
                return claimed
            found = await self.context(conn, claimed)
        return [replace(saga, context=found.get(saga.id)) for saga in claimed]

    async def attempt(self, saga: Saga) -> None:
        """One attempt of ``saga``'s current step, and its transition recorded."""
        step = self.steps.get((saga.kind, saga.step))
        started = datetime.now(UTC)
        parent = propagate.extract(saga.trace)
        with self.tracer.start_as_current_span(
            f"saga {saga.kind} {saga.step}",
            context=parent,
            attributes={
                "tenx.saga.id": str(saga.id),
                "tenx.saga.kind": saga.kind,
                "tenx.saga.step": saga.step,
                "tenx.saga.attempt": saga.attempts,
            },
        ) as span:
            if step is None:
                transition = Transition(
                    outcome="error", status=SagaStatus.FAILED, step=saga.step, detail="no such step"
                )
            else:
                try:
                    transition = await step(saga)
                except Exception as exc:  # a bug or an outage: the step runs again later
                    log.exception("saga %s step %s failed", saga.id, saga.step)
                    transition = failed_step(saga, exc)
            span.set_attribute("tenx.saga.outcome", transition.outcome)
            if transition.outcome == "error":
                span.set_status(Status(StatusCode.ERROR, transition.detail))
            try:
                await self.record(saga, transition, started=started)
            except Exception:
                log.exception("saga %s: recording step %s failed", saga.id, saga.step)

    async def record(self, saga: Saga, transition: Transition, *, started: datetime) -> bool:
        """Record ``transition`` (group-committed, under the current trace
        context); False when the saga had moved on (the result is dropped)."""
        return await self._loop.record(
            _Pending(saga, transition, started, otel_context.get_current())
        )

    async def _record_together(self, batch: Sequence[_Pending]) -> list[bool]:
        """The transitions of ``batch`` in one transaction, each fenced on the
        status, step and attempt its runner claimed, each under its attempt's
        trace (so its events carry that trace on)."""
        results = []
        async with self.uow() as uow:
            for pending in batch:
                token = otel_context.attach(pending.context)
                try:
                    results.append(await self._record_one(uow, pending))
                finally:
                    otel_context.detach(token)
            try:
                await uow.commit()
            except Exception:
                if not uow.committed:
                    raise
                # Committed; what runs after the commit (read-your-writes
                # positions) failed: the transitions stand, recorded once.
                log.exception("saga runner: after recording %d transitions", len(batch))
        return results

    async def _record_one(self, uow: UnitOfWork, pending: _Pending) -> bool:
        saga, transition = pending.saga, pending.transition
        moved = await uow.session.execute(
            fenced(
                self.sagas,
                row_id=saga.id,
                claimed={"status": saga.status, "step": saga.step, "attempts": saga.attempts},
            ).values(**transition_values(saga, transition))
        )
        if moved.first() is None:
            log.info("saga %s moved on while step %s ran; result dropped", saga.id, saga.step)
            return False
        if transition.apply is not None:
            await transition.apply(uow)
        await uow.session.execute(
            insert(self.steps_log).values(
                saga_id=saga.id,
                step=saga.step,
                attempt=saga.attempts,
                outcome=transition.outcome,
                detail=transition.detail,
                started_at=pending.started,
                finished_at=datetime.now(UTC),
            )
        )
        if transition.status in ACTIVE and not transition.retry_in_s:
            uow.wake(CHANNEL)
        return True

    def collect(self) -> Iterator[Metric]:
        return self._loop.collect()


def failed_step(saga: Saga, exc: Exception) -> Transition:
    """A step that raised (a bug or an outage) runs again, later each time."""
    return Transition(
        outcome="error",
        status=saga.status,
        step=saga.step,
        retry_in_s=backoff_s(saga.attempts, base_s=1.0, max_s=30.0),
        detail=f"{type(exc).__name__}: {exc}"[:2000],
    )


def transition_values(saga: Saga, transition: Transition) -> dict[str, Any]:
    """The saga row's new values: the step's attempts go on counting while it
    repeats; a saga that ends is never due again."""
    same_step = transition.step == saga.step and transition.status == saga.status
    values: dict[str, Any] = {
        "status": transition.status,
        "step": transition.step,
        "attempts": saga.attempts if same_step else 0,
        "updated_at": func.now(),
        "next_attempt_at": (
            None
            if transition.status not in ACTIVE
            else func.now() + timedelta(seconds=transition.retry_in_s or 0)
        ),
    }
    if transition.reason is not None:
        values["reason"] = transition.reason
    if transition.outcome == "error" or transition.retry_in_s is not None:
        values["last_error"] = transition.detail
    return values


# -- what operators see ----------------------------------------------------------


def saga_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "kind": row.kind,
        "status": row.status,
        "step": row.step,
        "attempts": row.attempts,
        "reason": row.reason,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def step_view(row: Any) -> dict[str, Any]:
    return {
        "step": row.step,
        "attempt": row.attempt,
        "outcome": row.outcome,
        "detail": row.detail,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat(),
    }
