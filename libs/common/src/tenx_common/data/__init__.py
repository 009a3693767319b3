"""PostgreSQL, Redis and Elasticsearch: engines (``db``), the session router
that sends reads to replicas (``session_router``), one transaction per
command with its outbox rows (``uow``, ``outbox``), Alembic (``migrations``),
the Redis client and cache-aside (``cache``), the Elasticsearch client and
indices (``elasticsearch``).

Services import from here; the modules import one another directly."""

from tenx_common.data.cache import Cache, NearCache
from tenx_common.data.elasticsearch import (
    ORDERS,
    PRODUCTS,
    IndexSpec,
    create_index,
    ensure_indices,
    new_index_name,
    swap_alias,
)
from tenx_common.data.migrations import (
    create_consumer_tables_v1,
    create_outbox_table_v1,
    drop_consumer_tables_v1,
    run_migrations,
)
from tenx_common.data.outbox import outbox_table
from tenx_common.data.session_router import SessionRouter
from tenx_common.data.uow import UnitOfWork

__all__ = [
    "ORDERS",
    "PRODUCTS",
    "Cache",
    "IndexSpec",
    "NearCache",
    "SessionRouter",
    "UnitOfWork",
    "create_consumer_tables_v1",
    "create_index",
    "create_outbox_table_v1",
    "drop_consumer_tables_v1",
    "ensure_indices",
    "new_index_name",
    "outbox_table",
    "run_migrations",
    "swap_alias",
]
