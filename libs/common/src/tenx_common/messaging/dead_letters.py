"""The admin endpoints of a service's dead letters (list, redrive), for operators."""

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data.db import Engines
from tenx_common.messaging.inbox import list_dead_letters, request_redrive
from tenx_common.security.dependencies import AdminUser
from tenx_common.web.pagination import Items
from tenx_common.web.problems import ProblemError
from tenx_common.web.timestamps import Timestamp


class DeadLetterStatus(StrEnum):
    """A dead letter's status, as the admin routes document it: the values of
    PARKED, REDRIVE_REQUESTED and REDRIVEN in ``inbox``."""

    PARKED = "parked"
    REDRIVE_REQUESTED = "redrive_requested"
    REDRIVEN = "redriven"


class DeadLetter(BaseModel):
    """A dead letter as ``list_dead_letters`` gives it (without the record's value)."""

    id: uuid.UUID
    consumer: str
    topic: str
    partition: int
    offset: int
    key: str | None
    event_id: str  # topic:partition:offset when the record was not a CloudEvent
    event_type: str | None
    error: str
    attempts: int
    status: DeadLetterStatus
    failed_at: Timestamp
    redriven_at: Timestamp | None


class RedriveRequested(BaseModel):
    requested: int  # parked dead letters marked for redrive


def dead_letter_router(prefix: str, table: Table) -> APIRouter:
    """``GET {prefix}/dead-letters?status=`` and ``POST {prefix}/dead-letters/{id}/redrive``
    (and ``/redrive`` for all parked ones), for admins."""
    router = APIRouter(prefix=prefix, tags=["operations"])

    def engine(request: Request) -> AsyncEngine:
        # Infra's accessor: a service without a database fails here with its name.
        engines: Engines = request.app.state.wiring.infra.engines
        return engines.primary

    @router.get("/dead-letters")
    async def dead_letters(
        request: Request,
        _: AdminUser,
        status: Annotated[DeadLetterStatus | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Items[DeadLetter]:
        found = await list_dead_letters(engine(request), table, status=status, limit=limit)
        return Items[DeadLetter].model_validate({"items": found})

    @router.post("/dead-letters/redrive", status_code=202)
    async def redrive_all(request: Request, _: AdminUser) -> RedriveRequested:
        return RedriveRequested(requested=await request_redrive(engine(request), table, None))

    @router.post("/dead-letters/{letter_id}/redrive", status_code=202)
    async def redrive_one(request: Request, letter_id: uuid.UUID, _: AdminUser) -> RedriveRequested:
        requested = await request_redrive(engine(request), table, [letter_id])
        if not requested:
            raise ProblemError(
                status=404, code="not_found", detail="No parked dead letter with this id."
            )
        return RedriveRequested(requested=requested)

    return router
