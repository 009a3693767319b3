"""Liveness and readiness.

``/healthz`` answers while the process serves requests. ``/readyz`` runs every
dependency check of the service at once, each under a timeout, and answers 503
problem+json naming the dependencies that are down.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tenx_common.web.problems import problem_response

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    probe: Callable[[], Awaitable[object]]


async def run_checks(checks: Sequence[Check], *, timeout_s: float) -> dict[str, str]:
    async def one(check: Check) -> str:
        try:
            async with asyncio.timeout(timeout_s):
                await check.probe()
        except Exception as exc:  # a check that fails for any reason means "down"
            log.warning("readiness check %s failed: %r", check.name, exc)
            return "down"
        return "up"

    results = await asyncio.gather(*(one(check) for check in checks))
    return dict(zip((check.name for check in checks), results, strict=True))


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Literal["up", "down"]]  # by dependency


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> Liveness:
        return Liveness(status="ok")

    @router.get(
        "/readyz",
        summary="Readiness: every dependency of the service",
        response_model=Readiness,
        responses={503: {"description": "A dependency is down"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        checks: Sequence[Check] = request.app.state.checks
        results = await run_checks(checks, timeout_s=request.app.state.settings.readiness_timeout_s)
        down = sorted(name for name, state in results.items() if state != "up")
        if down:
            return problem_response(
                status=503,
                code="not_ready",
                detail="Dependencies down: " + ", ".join(down),
                checks=results,
            )
        return JSONResponse({"status": "ready", "checks": results})

    return router
