"""Alembic environment of the search-indexer service's database."""

from tenx_common.data.migrations import run_migrations

run_migrations(target_metadata=None)
