"""The search-indexer's own database: the outbox of its replies, the inbox and
dead letters of its consumer, and a tombstone per erased user. The documents
themselves live in Elasticsearch."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, MetaData, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenx_common.messaging import messaging_tables


class Base(DeclarativeBase):
    metadata = MetaData()


outbox, inbox, dead_letters = messaging_tables(Base.metadata)


class ErasedUser(Base):
    """A user erased by the account-deletion saga: no document of theirs comes back."""

    __tablename__ = "erased_users"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
