"""PostgreSQL, Redis and Elasticsearch: engines (``db``), the session router
that sends reads to replicas (``session_router``), one transaction per
command with its outbox rows (``uow``, ``outbox``), Alembic (``migrations``),
the Redis client and cache-aside (``cache``), the Elasticsearch client and
indices (``elasticsearch``).

Services import from here, except ``elasticsearch`` and ``migrations``: their
libraries are large, and only the processes that search or migrate load them.
The modules import one another directly."""

from tenx_common.data.cache import Cache, NearCache
from tenx_common.data.outbox import outbox_table
from tenx_common.data.session_router import SessionRouter
from tenx_common.data.uow import UnitOfWork

__all__ = [
    "Cache",
    "NearCache",
    "SessionRouter",
    "UnitOfWork",
    "outbox_table",
]
