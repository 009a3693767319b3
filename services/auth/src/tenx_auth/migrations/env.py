"""Alembic environment of the auth service's database."""

from tenx_auth.adapters.orm import Base
from tenx_common.data.migrations import run_migrations

run_migrations(target_metadata=Base.metadata)
