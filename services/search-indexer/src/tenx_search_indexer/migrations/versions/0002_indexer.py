"""The outbox (erasure replies), the consumer's inbox and dead letters, and the
erased users' tombstones.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenx_common.data.migrations import (
    create_consumer_tables_v1,
    create_outbox_table_v1,
    drop_consumer_tables_v1,
)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_table_v1()
    create_consumer_tables_v1()
    op.create_table(
        "erased_users",
        sa.Column("user_id", sa.Uuid, primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_users")
    drop_consumer_tables_v1()
    op.drop_table("outbox")
