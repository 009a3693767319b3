"""Customer profiles: read cache-aside, changed by their owner.

A user who has not changed anything yet has an empty profile; the
registration saga fills in the name and email from UserRegistered.

``GET /v1/me`` answers the caller's profile (name, email, shipping address,
version) from Redis (``profile_cache_ttl_s``, 5 min) with an ETag and
``Cache-Control: private, no-cache``; before UserRegistered arrives it is the
empty profile, version 0. ``PATCH /v1/me`` upserts the fields sent (the name,
the shipping address; the email is auth's), bumps the version and drops the
cached copy; unknown fields, an empty body or a bad country are a 422 that
changes nothing.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tenx_api.adapters.orm import CustomerProfile
from tenx_api.domain.customers import ProfileUpdate
from tenx_api.service_layer.deps import ApiDeps


def public(user_id: uuid.UUID, profile: CustomerProfile | None) -> dict[str, Any]:
    if profile is None:
        return {
            "user_id": str(user_id),
            "name": None,
            "email": None,
            "shipping_address": None,
            "version": 0,
            "updated_at": None,
        }
    return {
        "user_id": str(user_id),
        "name": profile.name,
        "email": profile.email,
        "shipping_address": profile.shipping_address,
        "version": profile.version,
        "updated_at": profile.updated_at.isoformat(),
    }


def cache_key(user_id: uuid.UUID) -> str:
    return f"profile:{user_id}"


async def get_profile(user_id: uuid.UUID, *, deps: ApiDeps) -> bytes:
    async def query(session: AsyncSession) -> bytes:
        profile = await session.get(CustomerProfile, user_id)
        return json.dumps(public(user_id, profile)).encode()

    document = await deps.cache.get_or_load(
        cache_key(user_id),
        lambda: deps.sessions.read(query, client=cache_key(user_id)),
        ttl_s=deps.settings.profile_cache_ttl_s,
    )
    assert document is not None  # an absent profile is an empty one
    return document


async def update_profile(user_id: uuid.UUID, cmd: ProfileUpdate, *, deps: ApiDeps) -> bytes:
    now = datetime.now(UTC)
    # The fields sent, each whole (an address is stored with its defaults).
    changes = {
        name: value
        for name, value in cmd.model_dump(mode="json").items()
        if name in cmd.model_fields_set
    }
    statement = (
        insert(CustomerProfile)
        .values(user_id=user_id, version=1, created_at=now, updated_at=now, **changes)
        .on_conflict_do_update(
            index_elements=[CustomerProfile.user_id],
            set_={**changes, "version": CustomerProfile.version + 1, "updated_at": now},
        )
        .returning(CustomerProfile)
    )
    async with deps.uow() as uow:
        profile = (await uow.session.execute(statement)).scalar_one()
        await uow.commit()
    await deps.committed(str(user_id), cache_key(user_id))
    return json.dumps(public(user_id, profile)).encode()
