"""The messaging tables of a service's database, declared in one call."""

from typing import NamedTuple

from sqlalchemy import MetaData, Table

from tenx_common.data.outbox import outbox_table
from tenx_common.messaging.inbox import dead_letter_table, inbox_table


class MessagingTables(NamedTuple):
    outbox: Table  # the events it publishes, until the relay has sent them
    inbox: Table  # the events its consumers have had the effect of
    dead_letters: Table  # the records its consumers gave up on


def messaging_tables(metadata: MetaData) -> MessagingTables:
    """The outbox, inbox and dead-letter tables on ``metadata``: every service
    has the same three, with the same names and columns (its migrations)."""
    return MessagingTables(
        outbox=outbox_table(metadata),
        inbox=inbox_table(metadata),
        dead_letters=dead_letter_table(metadata),
    )
