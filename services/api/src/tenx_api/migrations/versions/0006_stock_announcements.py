"""Stock changes announced per product, not per order: the version last
announced in a StockChanged, the trace of the newest change, and a partial
index of the products whose newest version is not announced yet.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "products",
        sa.Column("announced_version", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column(
        "products",
        sa.Column("change_trace", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.execute("UPDATE products SET announced_version = version")  # announced before this
    op.create_index(
        "ix_products_unannounced",
        "products",
        ["id"],
        postgresql_where=sa.text("version <> announced_version"),
    )


def downgrade() -> None:
    op.drop_index("ix_products_unannounced", table_name="products")
    op.drop_column("products", "change_trace")
    op.drop_column("products", "announced_version")
