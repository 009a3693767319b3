"""The account-deletion saga's replies and re-requests; the consumer's inbox
and dead letters.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenx_common.data.migrations import create_consumer_tables_v1, drop_consumer_tables_v1

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "account_deletions",
        sa.Column("requests", sa.Integer, nullable=False, server_default="1"),
    )
    op.add_column(
        "account_deletions",
        sa.Column("next_request_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "ix_account_deletions_open",
        "account_deletions",
        ["next_request_at"],
        postgresql_where=sa.text("completed_at IS NULL"),
    )
    op.create_table(
        "account_deletion_replies",
        sa.Column(
            "deletion_id",
            sa.Uuid,
            sa.ForeignKey("account_deletions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("service", sa.Text, primary_key=True),
        sa.Column("erased_at", TZ, nullable=False),
    )
    create_consumer_tables_v1()


def downgrade() -> None:
    drop_consumer_tables_v1()
    op.drop_table("account_deletion_replies")
    op.drop_index("ix_account_deletions_open", "account_deletions")
    op.drop_column("account_deletions", "next_request_at")
    op.drop_column("account_deletions", "requests")
