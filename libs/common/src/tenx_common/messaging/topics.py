"""The platform's Kafka topics, created by the project: the broker never
auto-creates one. ``python -m tenx_common.messaging.topics`` creates what is missing.

Naming: ``<bounded context>.<aggregate, plural>``; the aggregate id is the key.
Each consumer group has a dead-letter topic ``dlq.<consumer>`` (same key).
Every topic has ``TENX_TOPIC_PARTITIONS`` partitions (3 by default), which
bound how many instances of a consumer share the work.
"""

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tenx_common.settings import KafkaSettings

DOMAIN_TOPICS = ("auth.users", "catalog.products", "orders.orders", "privacy.erasure")
CONSUMERS = ("api", "auth", "notify", "search-indexer")
TOPICS = DOMAIN_TOPICS + tuple(f"dlq.{consumer}" for consumer in CONSUMERS)

log = logging.getLogger(__name__)


class TopicSettings(KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="TENX_", extra="ignore")

    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)


async def ensure_topics(settings: TopicSettings, *, names: tuple[str, ...] = TOPICS) -> list[str]:
    """Create each topic of ``names`` that does not exist yet; return those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        missing = sorted(set(names) - set(await admin.list_topics()))
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=settings.topic_partitions,
                        replication_factor=settings.topic_replication_factor,
                    )
                    for name in missing
                ]
            )
        return missing
    finally:
        await admin.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    created = asyncio.run(ensure_topics(TopicSettings()))
    log.info("topics created: %s", ", ".join(created) or "none (all exist)")


if __name__ == "__main__":
    main()
