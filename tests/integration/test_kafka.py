"""Kafka: a keyed message goes through the real broker; topics are not auto-created."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from tenx_api.settings import Settings as ApiSettings
from tenx_common.messaging.topics import TOPICS


async def test_keyed_messages_are_produced_and_consumed_in_order(
    api_settings: ApiSettings, unique: str
) -> None:
    bootstrap = api_settings.kafka_bootstrap_servers
    topic = f"it.kafka.{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            sent = [
                await producer.send_and_wait(topic, key=b"order-1", value=f"event-{i}".encode())
                for i in range(5)
            ]
        finally:
            await producer.stop()
        assert len({meta.partition for meta in sent}) == 1  # one key, one partition

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"it-{unique}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            received: list[ConsumerRecord[bytes, bytes]] = []
            async with asyncio.timeout(30):
                while len(received) < 5:
                    batch = await consumer.getmany(timeout_ms=1000)
                    received += [record for records in batch.values() for record in records]
            await consumer.commit()
        finally:
            await consumer.stop()
        assert [record.key for record in received] == [b"order-1"] * 5
        assert [record.value for record in received] == [f"event-{i}".encode() for i in range(5)]
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def test_platform_topics_exist_and_others_are_not_auto_created(
    api_settings: ApiSettings, unique: str
) -> None:
    bootstrap = api_settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        assert set(TOPICS) <= set(await admin.list_topics())
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(f"it.never.created.{unique}", b"x")
    finally:
        await producer.stop()
