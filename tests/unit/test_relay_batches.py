"""How the relay hands a claimed batch to Kafka: one record batch per
partition (a new one when it is full), each row on the partition ``send``
would give its key, and done only when every record batch is acknowledged."""

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaProducer

from tenx_common.messaging.relay import Batches
from tests.unit.conftest import CLOSED

PARTITIONS = {0, 1, 2}


class RecordingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """A producer that is never started: it records the record batches it is given."""

    def __init__(self, *, max_batch_size: int) -> None:
        super().__init__(bootstrap_servers=CLOSED, max_batch_size=max_batch_size)
        self.batches: list[tuple[str, int, list[bytes]]] = []
        self.acks: list[asyncio.Future[None]] = []
        # The cluster as its metadata would describe it: one topic, three partitions.
        self._metadata.partitions_for_topic = lambda topic: PARTITIONS
        self._metadata.available_partitions_for_topic = lambda topic: PARTITIONS

    async def partitions_for(self, topic: str) -> set[int]:
        return PARTITIONS

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        assert batch.closed()  # no other send can add to it
        records = _records(batch)
        self.batches.append((topic, partition, records))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    def expected_partition(self, key: str) -> int:
        """Where ``send`` puts a record with ``key``."""
        return int(self._partition("t", None, key, None, key.encode(), b""))


def _records(batch: Any) -> list[bytes]:
    """The keys of the records in ``batch``, read back from its bytes."""
    from aiokafka.record.default_records import DefaultRecordBatch

    return [record.key for record in DefaultRecordBatch(bytes(batch._build()))]


async def all_acknowledged(producer: RecordingProducer, batches: Batches) -> None:
    """``batches.sent()``, with the broker acknowledging every record batch."""
    sending = asyncio.create_task(batches.sent())
    while not sending.done():
        for ack in producer.acks:
            if not ack.done():
                ack.set_result(None)
        await asyncio.sleep(0.001)
    await sending


def row(n: int, key: str, size: int = 100) -> SimpleNamespace:
    return SimpleNamespace(id=n, topic="t", key=key, document="x" * size)


async def test_each_row_goes_to_the_partition_send_would_give_its_key() -> None:
    producer = RecordingProducer(max_batch_size=16384)
    batches = Batches(producer)
    keys = [f"key-{n}" for n in range(30)]
    for n, key in enumerate(keys * 2):
        await batches.add(row(n, key), {"traceparent": "00-x"})
    await all_acknowledged(producer, batches)
    assert len(producer.batches) == len({p for _, p, _ in producer.batches}) <= len(PARTITIONS)
    for _, partition, records in producer.batches:
        assert {producer.expected_partition(k.decode()) for k in records} == {partition}
        # a key's rows in the order they were added
        assert [k.decode() for k in records] == [k for k in keys * 2 if k.encode() in records]


async def test_a_full_record_batch_goes_out_and_the_row_starts_the_next() -> None:
    producer = RecordingProducer(max_batch_size=1024)
    batches = Batches(producer)
    for n in range(20):
        await batches.add(row(n, "one-key", size=200), {})
    await all_acknowledged(producer, batches)
    [partition] = {p for _, p, _ in producer.batches}
    assert partition == producer.expected_partition("one-key")
    assert len(producer.batches) > 1
    assert sum(len(records) for _, _, records in producer.batches) == 20


async def test_sent_waits_for_every_acknowledgement() -> None:
    producer = RecordingProducer(max_batch_size=1024)
    batches = Batches(producer)
    for n in range(20):
        await batches.add(row(n, f"k{n}", size=200), {})
    sending = asyncio.create_task(batches.sent())
    await asyncio.sleep(0.01)
    for ack in producer.acks[:-1]:
        ack.set_result(None)
    await asyncio.sleep(0.01)
    assert not sending.done()  # one record batch is not acknowledged yet
    producer.acks[-1].set_result(None)
    await sending


async def test_a_row_larger_than_a_record_batch_goes_alone() -> None:
    producer = RecordingProducer(max_batch_size=1024)
    batches = Batches(producer)
    await batches.add(row(1, "k", size=100), {})
    await batches.add(row(2, "k", size=5000), {})
    await batches.add(row(3, "k", size=100), {})
    await all_acknowledged(producer, batches)
    assert [len(records) for _, _, records in producer.batches] == [1, 1, 1]
