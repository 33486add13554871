"""The one port every transport fills: an outgoing message in, a provider id or an error out.

The dispatcher maps a `TransportError.kind` to message states (SPEC 7); a transport knows
only its provider, and imports nothing of the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parseaddr
from typing import Protocol, runtime_checkable

from dripcare.domain.privacy import mask_contact  # noqa: F401  (transports log masked contacts)

ERROR_KINDS = ("retryable", "permanent", "opted_out", "account", "ambiguous")


@dataclass(frozen=True)
class Outgoing:
    message_id: int | str  # a message row id; the clinic notice email uses "inbox-N"
    channel: str  # "sms" | "email"
    to: str  # E.164 phone or email address
    body: str  # SMS text, or the email's text/plain part
    expires_at: datetime  # aware UTC
    now: datetime  # aware UTC: the dispatcher's clock, so transports never read the system clock
    subject: str | None = None
    html: str | None = None
    unsubscribe_url: str | None = None  # https one-click URL, emails only


class TransportError(Exception):
    """What the provider answered, sorted into the five outcomes the dispatcher knows.

    `code` names the provider's answer ("twilio:21211", "smtp:550", "http:429", "timeout");
    `detail` is for operators' logs, so it never holds a body or an unmasked contact.
    """

    def __init__(self, kind: str, code: str, detail: str = ""):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown transport error kind {kind!r}")
        super().__init__(f"{kind} {code}" + (f": {detail}" if detail else ""))
        self.kind, self.code, self.detail = kind, code, detail


@runtime_checkable
class Transport(Protocol):
    channel: str
    name: str
    development: bool  # console and file: nothing reaches patients

    def send(self, outgoing: Outgoing) -> str:
        """The provider's id for the accepted message, or raise TransportError."""
        ...

    def lookup(self, outgoing: Outgoing, since: datetime) -> str | None:
        """The provider id of a message already accepted for this outgoing, else None."""
        ...


def email_headers(outgoing: Outgoing, email_from: str, reply_to: str | None) -> dict[str, str]:
    """The headers an email carries, shared by the file and SMTP transports so both agree."""
    headers = {"From": email_from, "To": outgoing.to}
    if reply_to:
        headers["Reply-To"] = reply_to
    # A template's stray newline must not become a header break (the email library refuses one).
    headers["Subject"] = " ".join((outgoing.subject or "").split())
    headers["Date"] = format_datetime(outgoing.now)
    # The same id on every attempt lets a receiving system drop the copy of an ambiguous send.
    headers["Message-ID"] = f"<dripcare-{outgoing.message_id}@{_domain(email_from)}>"
    if outgoing.unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{outgoing.unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
    return headers


def _domain(address: str) -> str:
    domain = parseaddr(address)[1].rpartition("@")[2]
    return domain or "localhost"
