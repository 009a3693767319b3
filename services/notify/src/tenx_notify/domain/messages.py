"""What each email says: a subject, and Jinja2 templates in plain text and HTML
(``tenx_notify/templates``; HTML is autoescaped, and a missing value is an error)."""

from dataclasses import dataclass
from email.message import EmailMessage
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


def mime(email: Email, *, sender: str, message_id: str, unsubscribe: str) -> EmailMessage:
    """The message on the wire. Its Message-ID is the delivery's, so a copy sent
    twice (the at-least-once window) is recognisable as the same message."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = message_id
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message
