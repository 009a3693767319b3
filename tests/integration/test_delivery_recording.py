"""The delivery loop's recording on the real notify database: sent deliveries
are marked as a set, each still fenced on the attempt its runner claimed; the
others one by one; the attempts' log in one statement."""

import uuid
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from sqlalchemy import delete, event, insert, select

from tenx_notify.adapters.orm import Delivery, DeliveryAttempt
from tenx_notify.bootstrap import bootstrap
from tenx_notify.domain.deliveries import DeliveryStatus
from tenx_notify.service_layer.deliveries import Attempt, Claimed, DeliveryRunner
from tenx_notify.settings import Settings as NotifySettings


def claimed(delivery_id: uuid.UUID, attempts: int) -> Claimed:
    return Claimed(
        id=delivery_id, kind="k", channel="email", payload={}, attempts=attempts, trace_headers={}
    )


def outcome(delivery: Claimed, values: dict[str, Any]) -> Attempt:
    log = {
        "delivery_id": delivery.id,
        "attempt": delivery.attempts,
        "outcome": values.get("status", "retried"),
        "status_code": None,
        "error": values.get("last_error"),
        "duration_ms": 1,
        "at": datetime.now(UTC),
    }
    return Attempt(delivery=delivery, values=values, log=log)


def sent() -> dict[str, Any]:
    return {
        "status": DeliveryStatus.SENT,
        "sent_at": datetime.now(UTC),
        "payload": None,
        "next_attempt_at": None,
    }


async def test_sent_deliveries_are_marked_as_a_set_each_fenced_on_its_attempt() -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    now = datetime.now(UTC)
    async with bootstrap(NotifySettings()) as wiring:
        engine = wiring.deps.engine
        async with engine.begin() as conn:
            await conn.execute(
                insert(Delivery),
                [
                    {
                        "id": delivery_id,
                        "event_id": f"test-{delivery_id}",
                        "channel": "email",
                        "user_id": uuid.uuid4(),
                        "kind": "k",
                        "payload": {"to": "x@example.com"},
                        "status": DeliveryStatus.PENDING,
                        "attempts": 1,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for delivery_id in ids
                ],
            )
        updates: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith(("UPDATE deliveries", "INSERT INTO delivery_attempts")):
                updates.append(statement.split(" SET ")[0].split(" (")[0])

        runner = DeliveryRunner(wiring.deps, trace.get_tracer(__name__))
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        try:
            recorded = await runner.record(
                [
                    outcome(claimed(ids[0], 1), sent()),
                    outcome(claimed(ids[1], 2), sent()),  # a newer claim holds it: stale
                    outcome(claimed(ids[2], 1), sent()),
                    outcome(claimed(ids[3], 1), {"last_error": "refused", "next_attempt_at": now}),
                ]
            )
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", seen)
        async with engine.connect() as conn:
            rows = {
                row.id: row
                for row in await conn.execute(
                    select(Delivery.__table__).where(Delivery.id.in_(ids))
                )
            }
            logged = list(
                await conn.scalars(
                    select(DeliveryAttempt.delivery_id).where(DeliveryAttempt.delivery_id.in_(ids))
                )
            )
            await conn.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
            await conn.execute(delete(Delivery).where(Delivery.id.in_(ids)))
            await conn.commit()

    assert recorded == [True, False, True, True]
    assert [rows[i].status for i in ids] == ["sent", "pending", "sent", "pending"]
    assert rows[ids[0]].payload is None
    assert rows[ids[1]].payload == {"to": "x@example.com"}
    assert rows[ids[3]].last_error == "refused"
    assert sorted(logged) == sorted([ids[0], ids[2], ids[3]])
    # the sent ones in one UPDATE, the retry in its own, the log in one INSERT
    assert updates == ["UPDATE deliveries", "UPDATE deliveries", "INSERT INTO delivery_attempts"]
