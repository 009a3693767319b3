"""Which dependency an exception says is down: one answer for every service.

``find_outage`` names the dependency (postgres, redis, kafka, elasticsearch)
whose connection failed or timed out, looking through what the libraries chain
(SQLAlchemy wraps asyncpg's error, asyncpg its socket's), the members of
exception groups, and a DBAPI error's driver exception. None means anything
else: a bug. What each client raises (measured against a closed port and a
port that accepts and never answers):

- PostgreSQL (SQLAlchemy over asyncpg): a refused or timed-out connect is a
  bare ``OSError`` (``ConnectionRefusedError``, ``socket.gaierror``) or
  ``TimeoutError`` from asyncpg, passed on unwrapped (the dialect translates
  only asyncpg's own exceptions); a connection lost in the handshake or a
  query is a ``DBAPIError`` over asyncpg's ``ConnectionDoesNotExistError``; a
  pool with no free connection in time is ``sqlalchemy.exc.TimeoutError``; a
  server starting, stopping or full answers ``CannotConnectNowError``,
  ``AdminShutdownError``, ``TooManyConnectionsError``; a write sent to a node
  that is no longer the primary (mid-failover, before PgBouncer follows)
  fails with ``ReadOnlySQLTransactionError``.
- Redis: ``redis.exceptions.ConnectionError`` or ``TimeoutError``.
- Kafka (aiokafka): ``KafkaConnectionError``; ``KafkaTimeoutError`` when no
  broker answers in time.
- Elasticsearch: ``elastic_transport.ConnectionError`` or ``ConnectionTimeout``.
"""

import sys
import traceback
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import aiokafka.errors as kafka
import asyncpg.exceptions as pg
import redis.exceptions
import sqlalchemy.exc

Dependency = Literal["postgres", "redis", "kafka", "elasticsearch"]

_POSTGRES_DOWN = (
    pg.PostgresConnectionError,  # SQLSTATE class 08: connecting failed, or the connection was lost
    pg.CannotConnectNowError,  # starting up or shutting down
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.TooManyConnectionsError,
    # A write that reached a node in recovery: the primary moved (a failover)
    # and the pooler had not followed it yet.
    pg.ReadOnlySQLTransactionError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection free in time
)
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_KAFKA_DOWN = (
    kafka.KafkaConnectionError,
    kafka.KafkaTimeoutError,
    kafka.NodeNotReadyError,
    kafka.RequestTimedOutError,
    kafka.NoBrokersAvailable,
)


class Outage(NamedTuple):
    dependency: Dependency
    error: BaseException  # the exception that says so

    def summary(self) -> str:
        """The error's type and the first line of its message (no SQL, no parameters)."""
        message = str(self.error).strip().partition("\n")[0][:300]
        return f"{type(self.error).__name__}: {message}" if message else type(self.error).__name__


def find_outage(exc: BaseException) -> Outage | None:
    for link in _links(exc):
        if (dependency := _dependency_of(link)) is not None:
            return Outage(dependency, link)
    return None


def _dependency_of(exc: BaseException) -> Dependency | None:
    if isinstance(exc, _REDIS_DOWN):
        return "redis"
    if isinstance(exc, _KAFKA_DOWN):
        return "kafka"
    if _elasticsearch_down(exc):
        return "elasticsearch"
    if isinstance(exc, _POSTGRES_DOWN):
        return "postgres"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "postgres"
    if isinstance(exc, pg.InterfaceError) and "connection is closed" in str(exc):
        return "postgres"
    if isinstance(exc, OSError | TimeoutError) and _raised_in_asyncpg(exc):
        return "postgres"
    return None


def _elasticsearch_down(exc: BaseException) -> bool:
    # Looked up, not imported: a process that never loaded the client (a
    # relay, notify, auth) cannot hold its errors, and skips its 20 MB.
    transport: Any = sys.modules.get("elastic_transport")
    return transport is not None and isinstance(
        exc, transport.ConnectionError | transport.ConnectionTimeout
    )


def _raised_in_asyncpg(exc: BaseException) -> bool:
    """Whether the error came up through asyncpg: a bare socket error or timeout
    is the database's only then (elsewhere it may be a file, or another client)."""
    return any(
        frame.f_globals.get("__name__", "").partition(".")[0] == "asyncpg"
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _links(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling (unless that was
    suppressed with ``from None``), a DBAPI error's driver exception and a
    group's members, nearest first, each once."""
    seen: set[int] = set()
    pending: deque[BaseException] = deque([exc])
    while pending:
        link = pending.popleft()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        if isinstance(link, BaseExceptionGroup):
            pending.extend(link.exceptions)
        context = None if link.__suppress_context__ else link.__context__
        orig = getattr(link, "orig", None)  # DBAPIError, and the dialect's own Error
        pending.extend(
            parent
            for parent in (link.__cause__, context, orig)
            if isinstance(parent, BaseException)
        )
