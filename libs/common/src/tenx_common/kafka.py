"""Kafka connectivity shared by producers and consumers."""

from aiokafka import AIOKafkaClient

from tenx_common.health import Check
from tenx_common.settings import KafkaSettings


def kafka_check(settings: KafkaSettings) -> Check:
    """Ready when the cluster answers a metadata request."""

    async def probe() -> None:
        client = AIOKafkaClient(
            bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=2000
        )
        try:
            await client.bootstrap()
            await client.fetch_all_metadata()
        finally:
            await client.close()

    return Check("kafka", probe)
