"""What each email says: a subject, and Jinja2 templates in plain text and HTML
(``tenx_notify/templates``; HTML is autoescaped, and a missing value is an error)."""

from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

SUBJECTS = {
    "verify_email": "Confirm your email address",
    "password_reset": "Reset your password",
    "order_confirmed": "Your order is confirmed",
    "order_cancelled": "Your order is cancelled",
}

_templates = Environment(
    loader=PackageLoader("tenx_notify", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


def render(kind: str, to: str, context: dict[str, Any]) -> Email:
    return Email(
        to=to,
        subject=SUBJECTS[kind],
        text=_templates.get_template(f"{kind}.txt").render(context),
        html=_templates.get_template(f"{kind}.html").render(context),
    )


def mime(email: Email, *, sender: str, message_id: str, unsubscribe: str) -> Message:
    """The message on the wire. Its Message-ID is the delivery's, so a copy sent
    twice (the at-least-once window) is recognisable as the same message.

    Headers all ASCII (nearly every address): built with the ``compat32``
    classes, whose headers are plain strings. ``email.policy.default`` parses
    every header it is given, which was a sixth of notify-worker's CPU."""
    headers = {
        "From": sender,
        "To": email.to,
        "Subject": email.subject,
        "Message-ID": message_id,
        "List-Unsubscribe": f"<{unsubscribe}>",
    }
    if all(value.isascii() for value in headers.values()):
        message: Message = MIMEMultipart("alternative")
        for name, value in headers.items():
            message[name] = value
        message.attach(MIMEText(email.text, "plain", "utf-8"))
        message.attach(MIMEText(email.html, "html", "utf-8"))
        return message
    return _international(email, headers)


def _international(email: Email, headers: dict[str, str]) -> EmailMessage:
    """An address or header beyond ASCII (sent with SMTPUTF8)."""
    message = EmailMessage()
    for name, value in headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message
