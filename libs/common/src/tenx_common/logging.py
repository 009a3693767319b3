"""JSON logs on stdout, one object per line, carrying request and trace ids.

Lines go through the stream's buffer and are flushed at once for warnings and
errors, otherwise at least every half second: a busy server makes one write
per batch, not one per request. (A SIGKILL can lose the last half second of
info lines; logging's exit hook flushes on a normal stop.)
"""

import contextlib
import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, *, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (request_id := request_id_var.get()) is not None:
            entry["request_id"] = request_id
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with contextlib.suppress(ValueError):  # a stream closed under us (tests)
            super().flush()


_FLUSH_INTERVAL_S = 0.5
_flusher_started = threading.Lock()


def _flush_now_and_then() -> None:
    """One thread per process flushes whichever buffered handlers are installed."""
    while True:
        time.sleep(_FLUSH_INTERVAL_S)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, BufferedStreamHandler):
                handler.flush()


def _start_flusher() -> None:
    if _flusher_started.acquire(blocking=False):  # never released: once per process
        threading.Thread(target=_flush_now_and_then, name="log-flush", daemon=True).start()


def configure_logging(*, service: str, level: str) -> None:
    handler = BufferedStreamHandler(sys.stdout)
    _start_flusher()
    handler.setFormatter(JsonFormatter(service=service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
