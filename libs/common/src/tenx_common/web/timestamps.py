"""The time fields of response bodies.

The services write times as ``datetime.isoformat()`` (``...+00:00``), and an
order's idempotent replay answers with the very string it stored. A response
model typed ``datetime`` would rewrite them (pydantic writes UTC as ``Z``), so
the models keep the string and only document it as a date-time."""

from typing import Annotated

from pydantic import WithJsonSchema

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
