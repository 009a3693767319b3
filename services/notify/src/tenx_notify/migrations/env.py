"""Alembic environment of the notify service's database."""

from tenx_common.data.migrations import run_migrations

run_migrations(target_metadata=None)
