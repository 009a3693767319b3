"""Kafka connectivity shared by producers and consumers."""

import asyncio
import sys

from aiokafka import AIOKafkaClient

from tenx_common.settings import KafkaSettings
from tenx_common.web.health import Check


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


async def wait_until_ready(settings: KafkaSettings, *, timeout_s: float) -> bool:
    """Whether the cluster answered a metadata request within ``timeout_s``."""
    check = kafka_check(settings)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await check.probe()
            return True
        except Exception:  # not up yet, for any reason: ask again
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.2)


if (
    __name__ == "__main__"
):  # python -m tenx_common.messaging.kafka [SECONDS]: the stack's readiness wait
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    raise SystemExit(0 if asyncio.run(wait_until_ready(KafkaSettings(), timeout_s=seconds)) else 1)
