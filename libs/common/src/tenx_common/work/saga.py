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
import contextlib
import functools
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
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    bindparam,
    case,
    column,
    func,
    insert,
    literal_column,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert, Update

from tenx_common.data.uow import UnitOfWork
from tenx_common.events import Event
from tenx_common.loops.backoff import backoff_s
from tenx_common.loops.wakeup import listening
from tenx_common.work.leased import LeasedLoop, Tally, claim_due, tally_counter

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
class Effect:
    """A state change that transitions recorded together write as a set: the
    runner's effect ``name`` gets the ``args`` of every such transition of a
    batch at once (``BatchEffect``)."""

    name: str
    args: Any


# Writes the effects of a batch in the recording's transaction, with one
# statement for all of them where it can; returns, for each args in order, the
# events to stage for it (the runner stages them under that attempt's trace).
BatchEffect = Callable[[UnitOfWork, Sequence[Any]], Awaitable[Sequence[Sequence[Event]]]]


@dataclass(frozen=True, slots=True)
class Transition:
    """What a step's attempt led to. ``outcome`` and ``detail`` go to the step log;
    ``effect`` (written together with the batch's others of its name) or
    ``apply`` (on its own) runs in the transaction that records the transition."""

    outcome: str
    status: str
    step: str
    retry_in_s: float | None = None  # the same step again, after this delay
    reason: str | None = None
    detail: str | None = None
    effect: Effect | None = None
    apply: Callable[[UnitOfWork], Awaitable[None]] | None = None


Step = Callable[[Saga], Awaitable[Transition]]


def start_saga(uow: UnitOfWork, sagas: Table, *, saga_id: uuid.UUID, kind: str, step: str) -> None:
    """Create a saga in the caller's transaction (its row written at the
    commit); runners wake at the commit."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    now = datetime.now(UTC)
    uow.insert_at_commit(
        sagas,
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
    meanwhile has its result dropped (the fence in ``SagaRunner.record``). A
    caller that also changes the rows a step changes (the order) locks the
    saga's row before those, as the runner records a step; the other way
    round the two deadlock (``tenx_api.adapters.statements.lock_saga``)."""
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
    effects: Mapping[str, BatchEffect] = field(default_factory=dict)  # by ``Effect.name``
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
        """The transitions of ``batch`` in one transaction, as sets: one fenced
        update of every saga (each on the status, step and attempt its runner
        claimed), each effect's statements once for all its transitions, one
        insert into the step log. Each event is staged under its attempt's
        trace. When the transaction fails, ``GroupCommit`` records each alone."""
        async with self.uow() as uow:
            moved = await self._move(uow, batch)
            results = [(p.saga.id, p.saga.attempts) in moved for p in batch]
            recorded = [p for p, ok in zip(batch, results, strict=True) if ok]
            for pending in batch:
                if (pending.saga.id, pending.saga.attempts) not in moved:
                    log.info(
                        "saga %s moved on while step %s ran; result dropped",
                        pending.saga.id,
                        pending.saga.step,
                    )
            if recorded:
                await self._apply(uow, recorded)
                await self._log(uow, recorded)
            if any(p.transition.status in ACTIVE and not p.transition.retry_in_s for p in recorded):
                uow.wake(CHANNEL)
            try:
                await uow.commit()
            except Exception:
                if not uow.committed:
                    raise
                # Committed; what runs after the commit (read-your-writes
                # positions) failed: the transitions stand, recorded once.
                log.exception("saga runner: after recording %d transitions", len(batch))
        return results

    async def _move(self, uow: UnitOfWork, batch: Sequence[_Pending]) -> set[tuple[uuid.UUID, int]]:
        """One fenced UPDATE of the batch's sagas; the (id, claimed attempt) of
        those that moved (a saga moved on meanwhile is not among them)."""
        columns: dict[str, list[Any]] = {name: [] for name, _ in _MOVE_COLUMNS}
        for pending in batch:
            saga = pending.saga
            row = {
                "id": saga.id,
                "was_status": saga.status,
                "was_step": saga.step,
                "was_attempts": saga.attempts,
                **transition_values(saga, pending.transition),
            }
            for name in columns:
                columns[name].append(row[name])
        result = await uow.session.execute(
            _move_statement(self.sagas),
            {f"each_{name}": values for name, values in columns.items()},
        )
        return {(row.id, row.was_attempts) for row in result}

    async def _apply(self, uow: UnitOfWork, recorded: Sequence[_Pending]) -> None:
        """The transitions' state changes: each ``apply`` on its own, then each
        effect once for all its transitions; every event under its attempt's trace."""
        by_effect: dict[str, list[_Pending]] = {}
        for pending in recorded:
            if pending.transition.apply is not None:
                with _attached(pending.context):
                    await pending.transition.apply(uow)
            if (effect := pending.transition.effect) is not None:
                by_effect.setdefault(effect.name, []).append(pending)
        for name, group in by_effect.items():
            staged = await self.effects[name](
                uow, [p.transition.effect.args for p in group if p.transition.effect]
            )
            for pending, events in zip(group, staged, strict=True):
                with _attached(pending.context):
                    for event in events:
                        await uow.publish(event)

    async def _log(self, uow: UnitOfWork, recorded: Sequence[_Pending]) -> None:
        """Every attempt of ``recorded`` into the step log, one statement."""
        finished = datetime.now(UTC)
        await uow.session.execute(
            _log_statement(self.steps_log),
            [
                {
                    "saga_id": p.saga.id,
                    "step": p.saga.step,
                    "attempt": p.saga.attempts,
                    "outcome": p.transition.outcome,
                    "detail": p.transition.detail,
                    "started_at": p.started,
                    "finished_at": finished,
                }
                for p in recorded
            ],
        )

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
    repeats; the reason stays unless the transition gives one; the last error
    is set by an error or a retry; a saga that ends is never due again
    (``due_in_s`` None), one that goes on is due after its retry's delay."""
    same_step = transition.step == saga.step and transition.status == saga.status
    return {
        "status": transition.status,
        "step": transition.step,
        "attempts": saga.attempts if same_step else 0,
        "reason": transition.reason,
        "sets_error": transition.outcome == "error" or transition.retry_in_s is not None,
        "error": transition.detail,
        "due_in_s": (
            None if transition.status not in ACTIVE else float(transition.retry_in_s or 0)
        ),
    }


# The fenced update of a batch's sagas takes one array per column.
_MOVE_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("id", Uuid),
    ("was_status", Text),
    ("was_step", Text),
    ("was_attempts", Integer),
    ("status", Text),
    ("step", Text),
    ("attempts", Integer),
    ("reason", Text),
    ("sets_error", Boolean),
    ("error", Text),
    ("due_in_s", Float),
)
_SECOND: ColumnElement[Any] = literal_column("interval '1 second'")


@functools.cache
def _move_statement(table: Table) -> Update:
    """UPDATE ``table`` FROM unnest(the batch's arrays): each saga moved to its
    transition's values when it still holds what its runner claimed."""
    v = (
        func.unnest(*(bindparam(f"each_{name}", type_=ARRAY(kind)) for name, kind in _MOVE_COLUMNS))
        .table_valued(*(column(name, kind) for name, kind in _MOVE_COLUMNS))
        .render_derived(name="v")
    )
    c = table.c
    return (
        update(table)
        .where(
            c.id == v.c.id,
            c.status == v.c.was_status,
            c.step == v.c.was_step,
            c.attempts == v.c.was_attempts,
        )
        .values(
            status=v.c.status,
            step=v.c.step,
            attempts=v.c.attempts,
            reason=func.coalesce(v.c.reason, c.reason),
            last_error=case((v.c.sets_error, v.c.error), else_=c.last_error),
            next_attempt_at=func.now() + v.c.due_in_s * _SECOND,  # NULL: never due again
            updated_at=func.now(),
        )
        .returning(c.id, v.c.was_attempts)
    )


@functools.cache
def _log_statement(table: Table) -> Insert:
    """A multi-row insert into the step log (RETURNING makes it one statement)."""
    return insert(table).returning(table.c.id)


@contextlib.contextmanager
def _attached(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


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
