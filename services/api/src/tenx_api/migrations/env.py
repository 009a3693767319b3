"""Alembic environment of the api service's database."""

from tenx_api.adapters.orm import Base
from tenx_common.data.migrations import run_migrations

run_migrations(target_metadata=Base.metadata)
