"""Kafka records as the consumer reads them: the record, its CloudEvent
envelope, the event it carries, and the trace context it brings along."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from tenx_common.events import Event
from tenx_common.messaging.errors import PermanentError


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the consumer handles it (also rebuilt from a dead letter)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str
    data: dict[str, Any]
    time: str | None = None  # when the event occurred (RFC 3339)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A record read: its envelope, and its event validated against its model."""

    record: Record
    envelope: Envelope
    event: Event


def read_envelope(record: Record) -> Envelope:
    try:
        document = orjson.loads(record.value)
        return Envelope(
            id=str(document["id"]),
            type=str(document["type"]),
            data=dict(document["data"]),
            time=document.get("time"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"not a structured CloudEvent: {exc!r}") from exc


def parse(record: Record, models: Mapping[str, type[Event]]) -> Delivery | None:
    """``record`` read; None when ``models`` (by CloudEvent type) has no model for it.
    Raises when it cannot be read (PermanentError) or fit its model (ValidationError)."""
    envelope = read_envelope(record)
    model = models.get(envelope.type)
    if model is None:
        return None
    return Delivery(record, envelope, model.model_validate(envelope.data))


def records_of(batches: Mapping[TopicPartition, list[Any]]) -> list[Record]:
    return [  # each partition's in order, one partition after another
        Record(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key.decode() if raw.key is not None else None,
            value=raw.value or b"",
            headers={k: v.decode() for k, v in raw.headers or ()},
        )
        for raws in batches.values()
        for raw in raws
    ]


def process_span_options(group: str, record: Record, envelope: Envelope) -> dict[str, Any]:
    """The CONSUMER span of one record: a child of the span that produced it
    (the context comes from the record's own headers, record by record)."""
    return {
        "name": f"{record.topic} process",
        "context": propagate.extract(record.headers),
        "kind": SpanKind.CONSUMER,
        "attributes": {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.consumer.group.name": group,
            "messaging.message.id": envelope.id,
            "messaging.kafka.message.key": record.key or "",
            "messaging.kafka.offset": record.offset,
            "messaging.destination.partition.id": str(record.partition),
            "cloudevents.event_type": envelope.type,
        },
    }


def sampled_out(headers: Mapping[str, str]) -> bool:
    """Whether the record's producer was in a trace that is not recorded."""
    parent = headers.get("traceparent", "")
    return len(parent) == 55 and parent[-2:] in ("00", "02")
