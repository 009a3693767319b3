"""Mail out over SMTP sessions kept open between messages.

A session per email cost a TCP connect, the greeting, EHLO and QUIT besides
the message itself. Here a session that sent a message goes back to a small
idle set and the next message reuses it; one idle longer than ``idle_s`` is
closed instead (servers drop idle sessions). A kept session the server turns
out to have closed is replaced, and the message sent once more on a new one
(a copy is possible only if the server took the message and then hung up
before saying so: SMTP delivery is at least once). Any other failure closes
the session and is the caller's to retry.
"""

import asyncio
import contextlib
import time
from email.message import Message

import aiosmtplib


class SmtpSessions:
    def __init__(
        self, host: str, port: int, *, timeout_s: float, size: int = 20, idle_s: float = 30.0
    ) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s
        self._size = size
        self._idle_s = idle_s
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # session, when it was put back

    async def send(self, message: Message) -> None:
        client = self._take()
        if client is not None:
            try:
                await client.send_message(message)
            except aiosmtplib.SMTPServerDisconnected:
                _drop(client)  # closed while idle, most likely: once more on a new one
            except BaseException:
                _drop(client)
                raise
            else:
                self._put_back(client)
                return
        client = aiosmtplib.SMTP(hostname=self._host, port=self._port, timeout=self._timeout_s)
        try:
            await client.connect()
            await client.send_message(message)
        except BaseException:
            _drop(client)
            raise
        self._put_back(client)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout_s):
                    await client.quit()
            _drop(client)

    def _take(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self._idle_s:
                return client
            _drop(client)
        return None

    def _put_back(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self._size:
            self._idle.append((client, time.monotonic()))
        else:
            _drop(client)


def _drop(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()
