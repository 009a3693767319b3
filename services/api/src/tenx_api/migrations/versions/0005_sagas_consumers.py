"""The order sagas, the consumer's inbox and dead letters, erased profiles.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tenx_common.data.migrations import create_consumer_tables_v1, drop_consumer_tables_v1

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sagas",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("trace", JSONB, nullable=False),
        sa.Column("next_attempt_at", TZ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index(
        "ix_sagas_due",
        "sagas",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('running', 'compensating')"),
    )
    op.create_index("ix_sagas_status_created", "sagas", ["status", "created_at"])
    op.create_table(
        "saga_steps",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("saga_id", sa.Uuid, sa.ForeignKey("sagas.id"), nullable=False),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=False),
    )
    op.create_index("ix_saga_steps_saga", "saga_steps", ["saga_id", "id"])
    op.add_column("customer_profiles", sa.Column("erased_at", TZ))
    create_consumer_tables_v1()


def downgrade() -> None:
    drop_consumer_tables_v1()
    op.drop_column("customer_profiles", "erased_at")
    op.drop_table("saga_steps")
    op.drop_table("sagas")
