"""notify's SMTP sessions: kept open between messages, replaced when the
server has closed one, dropped after a failure (adapters/smtp.py)."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import pytest

from tenx_notify.adapters.smtp import SmtpSessions


@dataclass
class Server:
    """Just enough SMTP: counts sessions and messages; can hang up after a
    message or refuse the next recipient."""

    port: int = 0
    sessions: int = 0
    messages: list[str] = field(default_factory=list)
    hang_up_after_message: bool = False
    refuse_next_recipient: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 test ESMTP\r\n")
        try:
            while line := await reader.readline():
                command = line.decode().strip().upper()
                if command.startswith("EHLO"):
                    writer.write(b"250 test\r\n")
                elif command.startswith("RCPT") and self.refuse_next_recipient:
                    self.refuse_next_recipient = False
                    writer.write(b"550 no such user\r\n")
                elif command.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                    writer.write(b"250 ok\r\n")
                elif command == "DATA":
                    writer.write(b"354 go on\r\n")
                    await writer.drain()
                    body = []
                    while (data := await reader.readline()) != b".\r\n":
                        body.append(data.decode())
                    self.messages.append("".join(body))
                    writer.write(b"250 queued\r\n")
                    if self.hang_up_after_message:
                        self.hang_up_after_message = False
                        await writer.drain()
                        return
                elif command == "QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    found = Server()
    listener = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield found


def message(n: int) -> EmailMessage:
    out = EmailMessage()
    out["From"] = "tenx@example.com"
    out["To"] = f"user{n}@example.com"
    out["Subject"] = f"message {n}"
    out.set_content(f"body {n}")
    return out


async def test_messages_share_one_session(server: Server) -> None:
    smtp = SmtpSessions("127.0.0.1", server.port, timeout_s=5)
    for n in range(3):
        await smtp.send(message(n))
    await smtp.close()
    assert (server.sessions, len(server.messages)) == (1, 3)


async def test_a_session_the_server_closed_is_replaced_and_the_message_sent(
    server: Server,
) -> None:
    smtp = SmtpSessions("127.0.0.1", server.port, timeout_s=5)
    server.hang_up_after_message = True
    await smtp.send(message(1))
    await asyncio.sleep(0.1)  # the server's close reaches the client
    await smtp.send(message(2))
    await smtp.close()
    assert server.sessions == 2
    assert [m.count("body") for m in server.messages] == [1, 1]


async def test_a_refused_message_raises_and_its_session_is_not_kept(server: Server) -> None:
    smtp = SmtpSessions("127.0.0.1", server.port, timeout_s=5)
    await smtp.send(message(1))
    server.refuse_next_recipient = True
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await smtp.send(message(2))
    await smtp.send(message(3))
    await smtp.close()
    assert (server.sessions, len(server.messages)) == (2, 2)
