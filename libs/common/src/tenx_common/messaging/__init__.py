"""Kafka: readiness (``kafka``), the topics (``topics``), the idempotent
consumer with its inbox and dead letters (``consumer``) and the outbox relay
(``relay``).

Services import from here; the modules import one another directly."""

from tenx_common.messaging.consumer import (
    Consumer,
    Handler,
    PermanentError,
    Record,
    UnavailableError,
    dead_letter_router,
    dead_letter_table,
    inbox_table,
    read_envelope,
    records_of,
    sampled_out,
)

__all__ = [
    "Consumer",
    "Handler",
    "PermanentError",
    "Record",
    "UnavailableError",
    "dead_letter_router",
    "dead_letter_table",
    "inbox_table",
    "read_envelope",
    "records_of",
    "sampled_out",
]
