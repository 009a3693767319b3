"""What every HTTP answer shares: problem+json errors (``problems``), which
dependency an exception says is down (``outages``), liveness and readiness
(``health``), the request middleware (``middleware``), keyset cursors and
the list bodies (``pagination``), the time fields of bodies (``timestamps``)
and Server-Sent Events (``streams``).

Services import from here; the modules import one another directly."""

from tenx_common.web.pagination import Items, Page, decode_cursor, encode_cursor
from tenx_common.web.problems import ProblemError, overloaded, unavailable
from tenx_common.web.streams import open_stream
from tenx_common.web.timestamps import Timestamp

__all__ = [
    "Items",
    "Page",
    "ProblemError",
    "Timestamp",
    "decode_cursor",
    "encode_cursor",
    "open_stream",
    "overloaded",
    "unavailable",
]
