"""Redis answers only with the generated password; a pooled connection that
Redis dropped (a restart) costs a reconnect, not an error; the mail catcher
receives a mail over SMTP and shows it over its HTTP API."""

import asyncio
import smtplib
from email.message import EmailMessage

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.cache import create_redis
from tests.support.stack import MAILPIT


async def test_redis_round_trip_needs_the_password(api_settings: ApiSettings, unique: str) -> None:
    client = create_redis(api_settings)
    try:
        await client.set(f"it:{unique}", b"value", ex=10)
        assert await client.get(f"it:{unique}") == b"value"
    finally:
        await client.aclose()
    anonymous = Redis.from_url(api_settings.redis_url)
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await anonymous.get(f"it:{unique}")
    finally:
        await anonymous.aclose()


async def test_a_connection_redis_dropped_is_replaced_not_raised(
    api_settings: ApiSettings, unique: str
) -> None:
    # What a Redis restart does to every idle pooled connection: the next
    # command on it finds the socket closed. Found by make chaos: auth's
    # rate limiter answered 500 on the first login after Redis came back.
    client = create_redis(api_settings)
    other = create_redis(api_settings)
    try:
        await client.set(f"it:{unique}", b"kept", ex=10)
        pooled_id = await client.client_id()
        assert await other.client_kill_filter(_id=str(pooled_id)) == 1
        assert await client.get(f"it:{unique}") == b"kept"
        assert await client.client_id() != pooled_id
    finally:
        await client.aclose()
        await other.aclose()


def _send_mail(subject: str) -> None:
    message = EmailMessage()
    message["From"] = "noreply@tenx.local"
    message["To"] = "someone@example.com"
    message["Subject"] = subject
    message.set_content("Hello from the integration tests.")
    with smtplib.SMTP("127.0.0.1", 1025, timeout=5) as smtp:
        smtp.send_message(message)


async def test_mail_sent_over_smtp_shows_in_the_http_api(unique: str) -> None:
    subject = f"integration {unique}"
    await asyncio.to_thread(_send_mail, subject)
    async with httpx.AsyncClient(base_url=MAILPIT, timeout=5) as client:
        found = []
        for _ in range(50):
            response = await client.get("/api/v1/search", params={"query": f'subject:"{subject}"'})
            response.raise_for_status()
            found = response.json()["messages"]
            if found:
                break
            await asyncio.sleep(0.1)
        assert len(found) == 1
        message = (await client.get(f"/api/v1/message/{found[0]['ID']}")).json()
    assert message["Subject"] == subject
    assert message["To"][0]["Address"] == "someone@example.com"
    assert "Hello from the integration tests." in message["Text"]
