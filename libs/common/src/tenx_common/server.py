"""Serve an app with uvicorn on uvloop and httptools."""

import uvicorn
from fastapi import FastAPI

from tenx_common.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    uvicorn.run(
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
