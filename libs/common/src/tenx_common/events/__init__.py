"""Domain events: frozen, versioned models, one module per topic.

An event is carried as a CloudEvents 1.0 structured JSON document; its
``subject`` is the aggregate id, which is also the Kafka message key.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    def aggregate_id(self) -> str:
        raise NotImplementedError


def cloud_event(event: Event, *, source: str) -> dict[str, Any]:
    """The structured-mode CloudEvents 1.0 document of ``event``."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event.TYPE,
        "subject": event.aggregate_id(),
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": event.model_dump(mode="json"),
    }
