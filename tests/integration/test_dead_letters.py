"""Dead letters of a running service's consumer, as an operator sees them: the
admin endpoints and the ``dead-letters`` command list and redrive them."""

import asyncio
import json
import sys
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import delete

from tenx_api.adapters.orm import dead_letters
from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine
from tenx_notify.settings import Settings as NotifySettings
from tests.support.stack import ROOT, admin, eventually, new_user


async def cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tenx_api",
        "dead-letters",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return out.decode()


async def test_a_parked_event_is_listed_and_redriven_by_operators(
    edge: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    operator = await admin(edge)
    event_id = str(uuid.uuid4())
    broken = {  # a UserRegistered without most of its data: it can never be handled
        "specversion": "1.0",
        "id": event_id,
        "source": "/tenx/test",
        "type": "tenx.auth.user.registered.v1",
        "data": {"user_id": str(uuid.uuid4())},
    }
    producer = AIOKafkaProducer(bootstrap_servers=api_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait("auth.users", key=b"x", value=json.dumps(broken).encode())
    finally:
        await producer.stop()

    async def letter() -> dict[str, Any] | None:
        listed = await edge.get("/v1/admin/dead-letters?status=parked", headers=operator)
        assert listed.status_code == 200, listed.text
        return next((d for d in listed.json()["items"] if d["event_id"] == event_id), None)

    try:
        parked = await eventually(letter)
        assert parked["consumer"] == "api"
        assert parked["attempts"] == 1  # not retried: its data does not fit the event's model
        assert "ValidationError" in parked["error"]
        assert event_id in await cli("list", "parked")

        user = await new_user(edge)
        path = f"/v1/admin/dead-letters/{parked['id']}/redrive"
        assert (await edge.post(path, headers=user)).status_code == 403
        unknown = await edge.post(
            f"/v1/admin/dead-letters/{uuid.uuid4()}/redrive", headers=operator
        )
        assert unknown.status_code == 404
        assert (await edge.post(path, headers=operator)).status_code == 202

        async def attempts(count: int) -> bool:
            found = await letter()
            return found is not None and found["attempts"] == count

        await eventually(lambda: attempts(2))  # the worker ran it again; still broken, parked
        assert "1 dead letter(s) marked" in await cli("redrive", parked["id"])
        await eventually(lambda: attempts(3))
    finally:  # notify consumes auth.users too: it parked the event as well
        for settings in (api_settings, NotifySettings()):
            engine = primary_engine(settings)
            async with engine.begin() as conn:
                await conn.execute(delete(dead_letters).where(dead_letters.c.event_id == event_id))
            await engine.dispose()
