"""The statement a unit of work runs at its commit (its staged rows and
NOTIFYs) is one SQLAlchemy can cache: a multi-row INSERT has no cache key,
and compiling it again at every commit cost a tenth of an api's CPU."""

from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from tenx_common.data.outbox import outbox_table
from tenx_common.data.uow import UnitOfWork, _statement, _writes
from tenx_common.work.saga import saga_tables


def test_the_commit_statement_has_a_cache_key_and_typed_parameters() -> None:
    metadata = MetaData()
    outbox, (sagas, _) = outbox_table(metadata), saga_tables(metadata)
    shape = ((sagas, ("id", "kind"), 1), (outbox, ("id", "topic", "payload"), 2))
    statement = _statement(shape)
    assert statement._generate_cache_key() is not None
    sql = str(statement.compile(dialect=asyncpg_dialect()))  # type: ignore[no-untyped-call]
    assert "INSERT INTO sagas (id, kind) VALUES ($1::UUID, $2::VARCHAR)" in sql, sql
    assert "($6::UUID, $7::VARCHAR, $8::JSONB)" in sql  # the second outbox row
    assert "unnest($10::TEXT[])" in sql
    assert _statement(shape) is statement  # rendered once per shape


def test_the_rows_and_channels_bind_by_name() -> None:
    outbox = outbox_table(MetaData())
    [(statement, values)] = list(
        _writes({outbox: [{"id": 1, "topic": "a"}, {"id": 2, "topic": "b"}]}, ["outbox"])
    )
    assert values == {
        "t0r0id": 1,
        "t0r0topic": "a",
        "t0r1id": 2,
        "t0r1topic": "b",
        "channels": ["outbox"],
    }
    assert set(values) <= set(statement.compile().params)


async def test_a_caller_writing_its_own_statement_takes_the_staged_rows() -> None:
    metadata = MetaData()
    outbox, (sagas, _) = outbox_table(metadata), saga_tables(metadata)

    class Session:
        async def close(self) -> None:
            pass

    factory: Any = Session
    async with UnitOfWork(factory, outbox=outbox, source="/test") as uow:
        uow.insert_at_commit(sagas, {"id": 1})
        uow.wake("sagas")
        uow.wake("outbox")
        assert uow.take_staged() == ({sagas: [{"id": 1}]}, ["outbox", "sagas"])
        assert uow.take_staged() == ({}, [])  # nothing left for the commit to write
