"""Kafka: readiness (``kafka``), the topics (``topics``), the idempotent
consumer (``consumer``: the loop; ``records``: what it reads; ``errors``: what
effects raise; ``inbox``: its inbox and dead letters; ``dead_letters``: their
admin endpoints), the outbox relay (``relay``), and ``tables``: the outbox,
inbox and dead letters a service declares in one call.

Services import from here; the modules import one another directly."""

from tenx_common.messaging.consumer import BatchHandler, Caused, Consumer, Handler, SetHandler
from tenx_common.messaging.dead_letters import dead_letter_router
from tenx_common.messaging.errors import PermanentError, UnavailableError
from tenx_common.messaging.inbox import dead_letter_table, inbox_table
from tenx_common.messaging.records import (
    Delivery,
    Envelope,
    Record,
    read_envelope,
    records_of,
    sampled_out,
)
from tenx_common.messaging.tables import MessagingTables, messaging_tables

__all__ = [
    "BatchHandler",
    "Caused",
    "Consumer",
    "Delivery",
    "Envelope",
    "Handler",
    "MessagingTables",
    "PermanentError",
    "Record",
    "SetHandler",
    "UnavailableError",
    "dead_letter_router",
    "dead_letter_table",
    "inbox_table",
    "messaging_tables",
    "read_envelope",
    "records_of",
    "sampled_out",
]
