"""Opaque keyset cursors (the last row's sort key, base64url JSON) and the
bodies that carry lists: ``Page`` (one page and the cursor of the next) and
``Items`` (a whole list)."""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from tenx_common.web.problems import ProblemError

T = TypeVar("T")


class Items(BaseModel, Generic[T]):
    items: list[T]


class Page(Items[T], Generic[T]):
    next_cursor: str | None  # None on the last page


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_cursor(cursor: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """``parse`` turns the decoded position into the sort key; any failure is a 400."""
    try:
        return parse(json.loads(base64.urlsafe_b64decode(cursor.encode())))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ProblemError(
            status=400, code="invalid_cursor", detail="The cursor is not one this API gave."
        ) from None
