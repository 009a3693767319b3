"""A user's channel preferences: both channels on until changed."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert

from tenx_notify.adapters.orm import Preferences
from tenx_notify.domain.preferences import PreferencesIn
from tenx_notify.service_layer.deps import NotifyDeps


def public(preferences: Preferences | None) -> dict[str, Any]:
    if preferences is None:
        return {"email": True, "in_app": True, "updated_at": None}
    return {
        "email": preferences.email,
        "in_app": preferences.in_app,
        "updated_at": preferences.updated_at.isoformat(),
    }


async def get(user_id: uuid.UUID, *, deps: NotifyDeps) -> dict[str, Any]:
    async with deps.uow() as uow:
        return public(await uow.session.get(Preferences, user_id))


async def put(user_id: uuid.UUID, cmd: PreferencesIn, *, deps: NotifyDeps) -> dict[str, Any]:
    values = {"email": cmd.email, "in_app": cmd.in_app, "updated_at": datetime.now(UTC)}
    async with deps.uow() as uow:
        saved = (
            await uow.session.execute(
                insert(Preferences)
                .values(user_id=user_id, **values)
                .on_conflict_do_update(index_elements=[Preferences.user_id], set_=values)
                .returning(Preferences)
            )
        ).scalar_one()
        await uow.commit()
    return public(saved)
