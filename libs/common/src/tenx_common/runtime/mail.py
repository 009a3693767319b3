"""SMTP reachability for services that send mail."""

import asyncio

from tenx_common.settings import SmtpSettings
from tenx_common.web.health import Check


def smtp_check(settings: SmtpSettings) -> Check:
    """Ready when the SMTP server greets with a 220 banner."""

    async def probe() -> None:
        reader, writer = await asyncio.open_connection(settings.smtp_host, settings.smtp_port)
        try:
            banner = await reader.readline()
            if not banner.startswith(b"220"):
                raise RuntimeError(f"unexpected SMTP banner {banner[:40]!r}")
            writer.write(b"QUIT\r\n")
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    return Check("smtp", probe)
