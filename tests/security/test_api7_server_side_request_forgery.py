"""API7:2023 Server Side Request Forgery: a webhook is the one place a client
names a URL the platform will call. Outside local mode (the local stack runs
its receivers on 127.0.0.1, so it is off there), a target that is or
resolves to a loopback, private, link-local (cloud metadata) or otherwise
non-public address, or carries credentials, is refused at registration (and
again before each delivery, redirects never followed). This module runs a
notify instance of its own in environment=staging, on the stack's database."""

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.security.conftest import World

PORT = 8092


@pytest.fixture(scope="module")
async def staging_notify() -> AsyncIterator[httpx.AsyncClient]:
    env = os.environ | {"TENX_NOTIFY_ENVIRONMENT": "staging"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenx_notify", "serve", "--port", str(PORT),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=10) as client:
            async with asyncio.timeout(60):
                while True:
                    assert process.returncode is None, "notify (staging) exited"
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.3)
            yield client
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1/admin/sagas",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/x",
        "http://192.168.1.1/x",
        "http://[::1]/x",
        "http://0.0.0.0/x",
        "http://2130706433/x",  # 127.0.0.1 written as one number
        "https://user:pass@93.184.215.14/x",
        "file:///etc/passwd",
        "gopher://93.184.215.14:70/x",
    ],
)
async def test_a_webhook_to_an_internal_target_is_refused(
    staging_notify: httpx.AsyncClient, world: World, url: str
) -> None:
    before = (await staging_notify.get("/v1/webhooks", headers=world.other)).json()["items"]
    refused = await staging_notify.post(
        "/v1/webhooks", json={"url": url, "events": ["*"]}, headers=world.other
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] in ("webhook_target_not_allowed", "validation_error")
    after = (await staging_notify.get("/v1/webhooks", headers=world.other)).json()["items"]
    assert after == before


async def test_a_public_target_is_accepted(staging_notify: httpx.AsyncClient, world: World) -> None:
    made = await staging_notify.post(
        "/v1/webhooks",
        json={"url": "https://93.184.215.14/hook", "events": ["*"]},
        headers=world.other,
    )
    assert made.status_code == 201, made.text
    gone = await staging_notify.delete(f"/v1/webhooks/{made.json()['id']}", headers=world.other)
    assert gone.status_code == 204
