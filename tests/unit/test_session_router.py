"""LSNs compare as the positions they name; commits that finish together have
their read-your-writes position read once; after-commit actions run in order,
or together."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tenx_common.data import session_router
from tenx_common.data.session_router import SessionRouter, parse_lsn
from tenx_common.data.uow import UnitOfWork


def test_lsn_parsing_orders_positions() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("1/0") == 1 << 32
    assert parse_lsn("16/B374D848") > parse_lsn("16/B374D847") > parse_lsn("15/FFFFFFFF")


class Positions:
    def __init__(self) -> None:
        self.advanced: list[tuple[int, set[str]]] = []

    async def get(self, client: str) -> int | None:
        return None

    async def advance(self, lsn: int, *clients: str) -> None:
        self.advanced.append((lsn, set(clients)))


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


def router(positions: Positions) -> SessionRouter:
    engines: Any = SimpleNamespace(sessions=None, replicas=[], primary=object())
    return SessionRouter(engines=engines, positions=positions)


async def test_commits_that_finish_together_have_their_position_read_once(
    primary: Primary,
) -> None:
    positions = Positions()
    routing = router(positions)

    await asyncio.gather(*(routing.record_write(f"user-{n}") for n in range(10)))

    assert primary.reads == 1
    assert positions.advanced == [(1, {f"user-{n}" for n in range(10)})]


async def test_a_commit_recorded_while_a_position_is_read_gets_a_later_one(
    primary: Primary,
) -> None:
    positions = Positions()
    routing = router(positions)
    primary.hold.clear()
    first = asyncio.create_task(routing.record_write("early"))
    await asyncio.sleep(0)  # its read has begun...
    late = asyncio.create_task(routing.record_write("late"))  # ...before this commit ended
    await asyncio.sleep(0)
    primary.hold.set()
    await asyncio.gather(first, late)

    assert positions.advanced == [(1, {"early"}), (2, {"late"})]


class Session:
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
