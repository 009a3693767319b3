"""Streamed answers (Server-Sent Events) that fail like every other answer.

A ``StreamingResponse`` sends its 200 before it reads the first chunk, so what
fails while the stream starts (a dependency that is down) could only break the
connection. ``open_stream`` takes the first chunk before the route returns:
a failure then is a problem answer (the 503 of ``tenx_common.web.problems``). Once
the stream runs, an outage ends it cleanly with one warning line: the client
reconnects (an event stream says when) and meets the 503 while it lasts.
"""

import logging
from collections.abc import AsyncIterator
from typing import TypeVar

from tenx_common.web.outages import find_outage

log = logging.getLogger(__name__)

T = TypeVar("T")


async def open_stream(chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    first = await anext(chunks)

    async def started() -> AsyncIterator[T]:
        yield first
        try:
            async for chunk in chunks:
                yield chunk
        except Exception as exc:
            if (outage := find_outage(exc)) is None:
                raise
            log.warning(
                "%s unavailable: a stream ended: %s",
                outage.dependency,
                outage.summary(),
                extra={"dependency": outage.dependency},
            )

    return started()
