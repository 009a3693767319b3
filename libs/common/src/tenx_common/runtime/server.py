"""Serve an app with uvicorn on uvloop and httptools."""

import contextlib
import gc
import os
import socket
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tenx_common.settings import ServiceSettings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, niceness: int) -> None:
        super().__init__(config)
        self.niceness = niceness

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_startup_heap()
        settle_priority(self.niceness)


def freeze_startup_heap() -> None:
    """Leave what startup made (modules, the app, its routes and pools) out
    of every later garbage collection. A full collection walks every object
    the process holds, and a loaded service holds hundreds of thousands: on
    busy cores one stalled the event loop for hundreds of milliseconds, and
    every request in flight (a refusal too) waited for it. Frozen, the
    collector walks only what was made since, which is what it can free.
    Startup's own garbage is collected first."""
    gc.collect()
    gc.freeze()


def settle_priority(niceness: int = 0) -> None:
    """Down to ``niceness`` once serving, from a boost (the local stack starts
    a process at -10 so that its imports finish fast on a busy machine), or
    from 0 for a background process (a worker: the local stack settles it at
    5, so that on shared cores a request is served before a worker's batch).
    A thread already at or above ``niceness`` is left alone. Niceness is per
    thread on Linux, and a new thread inherits its creator's: every thread is
    set."""
    tasks = Path("/proc/self/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():
        tid = int(task.name)
        with contextlib.suppress(OSError):  # a thread that has just ended
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)


def serve(app: FastAPI, settings: ServiceSettings, *, niceness: int = 0) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        # Longer than the edge keeps an idle upstream connection (60 s): the
        # edge must be the side that closes it. With uvicorn's 5 s default, a
        # request the edge sends on a connection uvicorn is closing is reset
        # (a POST is not retried: a 503 for the client).
        timeout_keep_alive=75,
    )
    _Server(config, niceness).run()
