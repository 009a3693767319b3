"""LSNs compare as the positions they name; a write marks its writer and
reads no position; readers that need positions together share one read;
after-commit actions run in order, or together."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tenx_common.data import session_router
from tenx_common.data.session_router import Replica, SessionRouter, parse_lsn
from tenx_common.data.uow import UnitOfWork


def test_lsn_parsing_orders_positions() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("1/0") == 1 << 32
    assert parse_lsn("16/B374D848") > parse_lsn("16/B374D847") > parse_lsn("15/FFFFFFFF")


class Positions:
    """Kept in memory: every client given has a write marked ``w:<client>``."""

    def __init__(self, *marked: str) -> None:
        self.kept: dict[str, int | str] = {client: f"w:{client}" for client in marked}
        self.marked: list[set[str]] = []
        self.settled: list[tuple[str, str, int]] = []

    async def get(self, client: str) -> int | str | None:
        return self.kept.get(client)

    async def mark(self, *clients: str) -> None:
        self.marked.append(set(clients))

    async def settle(self, client: str, mark: str, lsn: int) -> None:
        self.settled.append((client, mark, lsn))


class Primary:
    """pg_current_wal_lsn(): each read a position further; a read may be held."""

    def __init__(self) -> None:
        self.reads = 0
        self.hold = asyncio.Event()
        self.hold.set()

    async def read_value(self, engine: object, statement: str) -> str:
        self.reads += 1
        position = self.reads
        await self.hold.wait()
        return f"0/{position:X}"


@pytest.fixture
def primary(monkeypatch: pytest.MonkeyPatch) -> Primary:
    fake = Primary()
    monkeypatch.setattr(session_router, "read_value", fake.read_value)
    return fake


def router(positions: Positions, *, replica: bool = True) -> SessionRouter:
    """A router whose one replica (when ``replica``) is healthy and has
    replayed everything."""
    engines: Any = SimpleNamespace(sessions=lambda: Session(), replicas=[], primary=object())
    routing = SessionRouter(engines=engines, positions=positions)
    if replica:
        sessions: Any = lambda: Session()  # noqa: E731
        routing.replicas = [
            Replica("replica-1", engine=None, sessions=sessions, healthy=True, replay_lsn=1 << 40)  # type: ignore[arg-type]
        ]
    return routing


async def test_commits_that_finish_together_are_marked_at_once_and_no_position_is_read(
    primary: Primary,
) -> None:
    positions = Positions()
    routing = router(positions)

    await asyncio.gather(*(routing.record_write(f"user-{n}") for n in range(10)))

    assert positions.marked == [{f"user-{n}" for n in range(10)}]
    assert primary.reads == 0  # a write costs the primary no round trip


async def test_readers_of_marked_writes_share_one_position_read_and_keep_it(
    primary: Primary,
) -> None:
    clients = [f"user-{n}" for n in range(10)]
    positions = Positions(*clients)
    routing = router(positions)

    sessions = await asyncio.gather(*(routing.reader(client) for client in clients))

    assert primary.reads == 1
    assert sorted(positions.settled) == sorted((c, f"w:{c}", 1) for c in clients)
    assert {session.info["target"] for session in sessions} == {"replica-1"}


async def test_a_reader_that_arrives_while_a_position_is_read_gets_a_later_one(
    primary: Primary,
) -> None:
    positions = Positions("early", "late")
    routing = router(positions)
    primary.hold.clear()
    first = asyncio.create_task(routing.reader("early"))
    await asyncio.sleep(0)  # its read has begun...
    late = asyncio.create_task(routing.reader("late"))  # ...before this one saw its mark
    await asyncio.sleep(0)
    primary.hold.set()
    await asyncio.gather(first, late)

    assert positions.settled == [("early", "w:early", 1), ("late", "w:late", 2)]


async def test_with_no_replica_in_rotation_a_marked_write_costs_no_position_read(
    primary: Primary,
) -> None:
    positions = Positions("user")
    routing = router(positions, replica=False)

    session = await routing.reader("user")

    assert session.info["target"] == "primary"
    assert primary.reads == 0
    assert positions.settled == []


class Session:
    def __init__(self) -> None:
        self.info: dict[str, str] = {}

    async def commit(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_actions_after_a_commit_run_in_order_and_then_together() -> None:
    ran: list[str] = []
    both_running = asyncio.Event()
    running = 0

    def in_order(name: str) -> Any:
        async def action() -> None:
            await asyncio.sleep(0)
            ran.append(name)

        return action

    async def together() -> None:
        nonlocal running
        running += 1
        if running == 2:
            both_running.set()
        async with asyncio.timeout(1):
            await both_running.wait()  # the other one runs at the same time
        ran.append("together")

    uow = UnitOfWork(lambda: Session(), outbox=None, source="t")  # type: ignore[arg-type]
    async with uow:
        uow.after_commit(in_order("first"))
        uow.after_commit(together, together=True)
        uow.after_commit(in_order("second"))
        uow.after_commit(together, together=True)
        await uow.commit()

    assert ran == ["first", "second", "together", "together"]
