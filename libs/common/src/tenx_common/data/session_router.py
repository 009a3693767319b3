"""The session router: writes go to the primary, reads that may be stale go to
the replicas in rotation, and a client reads its own writes.

Read-your-writes: after a client's write commits, the router marks the client
as having written (in Redis, so every instance knows it). The client's next
read that could go to a replica reads the primary's WAL position then (it
covers the write, which committed before the mark) and keeps it in place of
the mark, unless a newer write has marked the client meanwhile. That
client's reads go to a replica only once the replica has replayed up to that
position; until then they go to the primary. A write costs no round trip to
PostgreSQL this way: most writes are not followed by their writer's read
within the marks' lifetime, and a read pays the position read at most once
per write.

A health loop measures each replica's replay lag; a replica that is down or
lags past ``max_lag_bytes`` is out of rotation until it is healthy again.
With no healthy replica every read goes to the primary. ``read`` runs a read
and, when the replica it chose fails under it, takes that replica out of
rotation and runs the read on the primary.
"""

import asyncio
import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenx_common.data.db import Engines, read_value
from tenx_common.loops.group_commit import GroupCommit
from tenx_common.loops.periodic import repeat, stop_task
from tenx_common.loops.supervised import pause

log = logging.getLogger(__name__)

PRIMARY = "primary"
MARK = "w:"  # a write whose position has not been read yet
# A node's replay position while it is a replica, null once it is a primary
# (a promoted node's last replayed position stays where it was): with
# failover any node may be either, and only replicas are read from.
REPLAYED = "(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() END)"

T = TypeVar("T")


def parse_lsn(value: str) -> int:
    """A PostgreSQL LSN ('16/B374D848') as a comparable integer."""
    high, low = value.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class WritePositions(Protocol):
    """Where each client's last write is kept: its position, or, until a read
    needs the position, a mark (a token unique to the write)."""

    async def get(self, client: str) -> int | str | None:
        """The position (an int), the mark of a write whose position is not
        read yet (a str), or None: no write within the marks' lifetime."""
        ...

    async def mark(self, *clients: str) -> None:
        """Each of ``clients`` has just committed a write."""
        ...

    async def settle(self, client: str, mark: str, lsn: int) -> None:
        """``lsn`` (read after ``mark`` was seen) in place of ``mark``, unless a
        newer write has marked the client since."""
        ...


class RedisWritePositions:
    """Positions and marks in Redis, shared by every instance, kept ``ttl_s``
    after the write."""

    # A mark gives way only to the position read for that very mark.
    _SETTLE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
"""

    def __init__(self, redis: Redis, *, ttl_s: int = 300, prefix: str = "ryw:lsn") -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._prefix = prefix

    async def get(self, client: str) -> int | str | None:
        raw = await self._redis.get(f"{self._prefix}:{client}")
        if raw is None:
            return None
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        return value if value.startswith(MARK) else int(value)

    async def mark(self, *clients: str) -> None:
        """One round trip for all: a write marks each client anew, whatever
        was kept (a newer write needs a newer position)."""
        mark = f"{MARK}{uuid.uuid4().hex}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for client in clients:
                pipe.set(f"{self._prefix}:{client}", mark, ex=self._ttl_s)
            await pipe.execute()

    async def settle(self, client: str, mark: str, lsn: int) -> None:
        await self._redis.eval(self._SETTLE, 1, f"{self._prefix}:{client}", mark, lsn)


@dataclass
class Replica:
    name: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    healthy: bool = False
    replay_lsn: int = 0
    lag_bytes: int | None = None
    checked: bool = False


@dataclass(eq=False)  # hashable: it is registered as a Prometheus collector
class SessionRouter:
    engines: Engines
    positions: WritePositions
    max_lag_bytes: int = 16 * 1024 * 1024
    check_interval_s: float = 1.0
    probe_timeout_s: float = 1.0
    replicas: list[Replica] = field(init=False)
    reads: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self._primary = self.engines.sessions
        self.replicas = [
            Replica(
                name=f"replica-{i}",
                engine=engine,
                sessions=async_sessionmaker(engine, expire_on_commit=False),
            )
            for i, engine in enumerate(self.engines.replicas, start=1)
        ]
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._writes: GroupCommit[tuple[str, ...]] = GroupCommit(self._mark_writes)
        self._position_reads: GroupCommit[list[int]] = GroupCommit(self._read_positions)

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        await self.check_replicas()
        self._task = asyncio.create_task(self._watch(), name="session-router-health")

    async def _watch(self) -> None:
        await pause(self._stopping, self.check_interval_s)  # start() has just checked
        await repeat(
            self.check_replicas,
            interval_s=self.check_interval_s,
            stopping=self._stopping,
            what="session router: checking the replicas failed",
            logger=log,
        )

    async def stop(self) -> None:
        # The flag as well as the cancel: a library may swallow a cancel, and
        # the loop must end all the same.
        self._stopping.set()
        if self._task is not None:
            await stop_task(self._task)

    # --- sessions --------------------------------------------------------------

    def writer(self) -> AsyncSession:
        session = self._primary()
        session.info["target"] = PRIMARY
        return session

    async def record_write(self, *clients: str) -> None:
        """Call after a write has committed: reads for each of ``clients`` (a
        user, or a resource such as a cache key) see it from now on.

        Calls that arrive while marks are being written share the next round
        trip (grouped: ``tenx_common.loops.group_commit``)."""
        await self._writes.submit(clients)

    async def _mark_writes(self, batch: Sequence[tuple[str, ...]]) -> list[bool]:
        await self.positions.mark(*{client for clients in batch for client in clients})
        return [True] * len(batch)

    async def _primary_position(self) -> int:
        """The primary's WAL position, read after this call began: calls that
        arrive while one is being read share the next read."""
        found: list[int] = []
        await self._position_reads.submit(found)
        return found[0]

    async def _read_positions(self, batch: Sequence[list[int]]) -> list[bool]:
        lsn = parse_lsn(await read_value(self.engines.primary, "SELECT pg_current_wal_lsn()::text"))
        for found in batch:
            found.append(lsn)
        return [True] * len(batch)

    async def reader(self, client: str | None = None) -> AsyncSession:
        """A session for reads that may be stale, yet never older than the
        client's own last write."""
        kept = await self.positions.get(client) if client is not None else None
        healthy = [replica for replica in self.replicas if replica.healthy]
        if healthy:
            needed = kept if isinstance(kept, int) else None
            if isinstance(kept, str) and client is not None:  # a write's position not read yet
                needed = await self._primary_position()
                await self.positions.settle(client, kept, needed)
            start = next(self._turn)
            for offset in range(len(healthy)):
                replica = healthy[(start + offset) % len(healthy)]
                if needed is None or await self._has_replayed(replica, needed):
                    session = replica.sessions()
                    session.info["target"] = replica.name
                    return session
        session = self._primary()
        session.info["target"] = PRIMARY
        return session

    async def read(
        self, query: Callable[[AsyncSession], Awaitable[T]], *, client: str | None = None
    ) -> T:
        """Run ``query`` (reads only: it may run twice) on a session from ``reader``.

        A replica that fails under it (stopped, restarting, a recovery conflict)
        leaves the rotation at once, and ``query`` runs again on the primary.
        """
        session = await self.reader(client)
        target = session.info["target"]
        try:
            async with session:
                result = await query(session)
        except (DBAPIError, OSError, TimeoutError) as exc:
            if target == PRIMARY:
                raise
            replica = next(r for r in self.replicas if r.name == target)
            self._set_health(replica, healthy=False, why=f"a read failed: {exc!r:.200}")
            self.reads["fallback"] += 1
            async with self.writer() as session:
                return await query(session)
        self.reads[target] += 1
        return result

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector: reads per target, and each replica's state."""
        reads = CounterMetricFamily(
            "tenx_db_reads", "Reads routed by the session router", labels=["target"]
        )
        for target, count in sorted(self.reads.items()):
            reads.add_metric([target], count)
        healthy = GaugeMetricFamily(
            "tenx_db_replica_healthy", "1 when the replica is in rotation", labels=["replica"]
        )
        lag = GaugeMetricFamily(
            "tenx_db_replica_lag_bytes", "Replay lag at the last check", labels=["replica"]
        )
        for replica in self.replicas:
            healthy.add_metric([replica.name], float(replica.healthy))
            lag.add_metric([replica.name], float(replica.lag_bytes or 0))
        yield from (reads, healthy, lag)

    # --- health ------------------------------------------------------------------

    async def check_replicas(self) -> None:
        try:
            primary_lsn = await self._scalar_lsn(self.engines.primary, "pg_current_wal_lsn()")
        except Exception as exc:  # without the primary no lag can be measured
            log.warning("session router: primary position unknown: %r", exc)
            return
        for replica in self.replicas:
            try:
                replica.replay_lsn = await self._scalar_lsn(replica.engine, REPLAYED)
            except Exception as exc:
                self._set_health(replica, healthy=False, why=f"unreachable: {exc!r}")
                continue
            replica.lag_bytes = max(0, primary_lsn - replica.replay_lsn)
            healthy = replica.lag_bytes <= self.max_lag_bytes
            self._set_health(replica, healthy=healthy, why=f"lag {replica.lag_bytes} bytes")

    async def _has_replayed(self, replica: Replica, needed: int) -> bool:
        if replica.replay_lsn >= needed:
            return True
        try:
            replica.replay_lsn = await self._scalar_lsn(replica.engine, REPLAYED)
        except Exception:
            return False
        return replica.replay_lsn >= needed

    async def _scalar_lsn(self, engine: AsyncEngine, function: str) -> int:
        async with asyncio.timeout(self.probe_timeout_s):
            value = await read_value(engine, f"SELECT {function}::text")
        if value is None:
            raise RuntimeError("no replay position: not a replica (a primary, or not streaming)")
        return parse_lsn(value)

    def _set_health(self, replica: Replica, *, healthy: bool, why: str) -> None:
        if replica.checked and replica.healthy != healthy:
            log.warning(
                "session router: %s %s rotation (%s)",
                replica.name,
                "back in" if healthy else "out of",
                why,
            )
        replica.healthy = healthy
        replica.checked = True
