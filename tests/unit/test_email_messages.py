"""An email as it goes on the wire: the same headers and parts whichever way it
was built (the ASCII one with compat32's plain headers, the international one
with email.policy.default), read back as a mail client reads it."""

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtplib.email import flatten_message

from tenx_notify.domain.messages import Email, mime

TEXT = "Your order of 2 \u00d7 Café crème is confirmed.\n"
HTML = "<p>Your order of 2 &times; Café crème is confirmed.</p>\n"


def read_back(address: str) -> tuple[EmailMessage, object]:
    built = mime(
        Email(to=address, subject="Your order is confirmed", text=TEXT, html=HTML),
        sender="Tenx <no-reply@tenx.local>",
        message_id="<d1@tenx.local>",
        unsubscribe="http://127.0.0.1:8080/v1/notifications/preferences",
    )
    wire = flatten_message(built, utf8=not address.isascii())  # as the SMTP client sends it
    parsed = message_from_bytes(wire, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed, built.policy


@pytest.mark.parametrize(
    ("address", "plain_headers"),
    [("ada@example.com", True), ("adä@exämple.com", False)],
)
def test_a_message_reads_back_the_same_whichever_way_it_was_built(
    address: str, plain_headers: bool
) -> None:
    parsed, used = read_back(address)

    assert (used is policy.compat32) is plain_headers
    assert parsed["To"] == address
    assert parsed["From"] == "Tenx <no-reply@tenx.local>"
    assert parsed["Subject"] == "Your order is confirmed"
    assert parsed["Message-ID"] == "<d1@tenx.local>"
    assert parsed["List-Unsubscribe"] == "<http://127.0.0.1:8080/v1/notifications/preferences>"
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    # Lines end in CRLF on the wire (an 8bit body keeps them once decoded).
    assert text.get_content().replace("\r\n", "\n") == TEXT
    assert html.get_content().replace("\r\n", "\n") == HTML
