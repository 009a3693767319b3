"""Customer profiles and the sandbox payment provider's ledger.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customer_profiles",
        sa.Column("user_id", sa.Uuid, primary_key=True),
        sa.Column("email", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("shipping_address", JSONB),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "sandbox_payments",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
        sa.Column("payment_method", sa.Text, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("decline_code", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("voided_at", TZ),
    )


def downgrade() -> None:
    op.drop_table("sandbox_payments")
    op.drop_table("customer_profiles")
