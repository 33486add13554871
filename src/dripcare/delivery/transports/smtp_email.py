"""Email over SMTP with the standard library (SPEC 7).

The SMTP dialogue is driven step by step (MAIL, RCPT, DATA) rather than through
`send_message`, because what a failure means depends on where it happened: before DATA
nothing was delivered and a retry is safe; once the message is in flight a lost answer
is ambiguous, and the retry relies on the unchanged Message-ID for the receiver to drop it.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr

from dripcare.delivery.transports.base import Outgoing, TransportError, email_headers, mask_contact

log = logging.getLogger("dripcare.transport")

# CRLF line ends as SMTP wants them, and 7-bit transfer encodings so a server without
# 8BITMIME still gets the accented text of a Spanish template intact.
_POLICY = policy.SMTP.clone(cte_type="7bit")
SECURITY_MODES = ("starttls", "ssl", "none")


class SmtpEmail:
    channel = "email"
    name = "smtp"
    development = False

    def __init__(self, host: str, port: int, security: str = "starttls", username: str | None = None,
                 password: str | None = None, email_from: str = "", reply_to: str | None = None,
                 timeout: float = 20.0, ssl_context: ssl.SSLContext | None = None):
        if security not in SECURITY_MODES:
            raise ValueError(f"SMTP security {security!r} is not one of {', '.join(SECURITY_MODES)}")
        self.host, self.port, self.security, self.timeout = host, int(port), security, timeout
        self.username, self.password = username, password
        self.email_from, self.reply_to = email_from, reply_to
        self.sender = parseaddr(email_from)[1]  # the envelope address, without a display name
        self.ssl_context = ssl_context or ssl.create_default_context()

    def send(self, outgoing: Outgoing) -> str:
        message = self.compose(outgoing)
        smtp = _step("connect", self._connect)
        delivered = False
        try:
            self._prepare(smtp)
            self._transmit(smtp, message, outgoing.to)
            delivered = True
        finally:
            _close(smtp, politely=delivered)
        log.info("smtp accepted message %s to %s", outgoing.message_id, mask_contact(outgoing.to))
        return str(message["Message-ID"])

    def lookup(self, outgoing: Outgoing, since: datetime) -> str | None:
        return None  # SMTP has no lookup: an ambiguous send is retried with the same Message-ID

    def compose(self, outgoing: Outgoing) -> EmailMessage:
        """multipart/alternative with the plain part first (clients show the last they can)."""
        message = EmailMessage(policy=_POLICY)
        for name, value in email_headers(outgoing, self.email_from, self.reply_to).items():
            message[name] = value
        message.set_content(outgoing.body)
        if outgoing.html:
            message.add_alternative(outgoing.html, subtype="html")
        return message

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.ssl_context)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _prepare(self, smtp: smtplib.SMTP) -> None:
        _step("connect", smtp.ehlo_or_helo_if_needed)
        if self.security == "starttls":
            _step("tls", smtp.starttls, context=self.ssl_context)
            _step("tls", smtp.ehlo)
        if self.username:
            _step("auth", smtp.login, self.username, self.password or "")

    def _transmit(self, smtp: smtplib.SMTP, message: EmailMessage, recipient: str) -> None:
        payload, options = self._payload(smtp, message, recipient)
        _expect(_step("sender", smtp.mail, self.sender, options)[0], (250,), "sender")
        _expect(_step("recipient", smtp.rcpt, recipient)[0], (250, 251), "recipient")
        try:
            code, _ = smtp.data(payload)
        except smtplib.SMTPDataError as error:  # DATA itself refused: nothing was delivered
            raise _reply_error(error.smtp_code, "data") from error
        except OSError as error:  # timeout or disconnect with the message in flight
            code = "timeout" if _timed_out(error) else "smtp:disconnected"
            raise TransportError("ambiguous", code, "no answer after the message was sent") from error
        _expect(code, (250,), "data")

    def _payload(self, smtp: smtplib.SMTP, message: EmailMessage, recipient: str) -> tuple[bytes, list[str]]:
        if self.sender.isascii() and recipient.isascii():
            return message.as_bytes(), []
        # An internationalised address needs the server's SMTPUTF8 (RFC 6531).
        if not smtp.has_extn("smtputf8"):
            kind = "permanent" if not recipient.isascii() else "account"
            raise TransportError(kind, "smtp:smtputf8", "the server cannot take a non-ASCII address")
        return message.as_bytes(policy=_POLICY.clone(utf8=True)), ["SMTPUTF8", "BODY=8BITMIME"]


def _step(phase: str, action, *args, **kwargs):
    """Run one step of the dialogue, turning a failure into what it means at that step."""
    try:
        return action(*args, **kwargs)
    except OSError as error:  # smtplib's exceptions, ssl's and socket's are all OSErrors
        raise _failure(error, phase) from error


def _expect(code: int, accepted: tuple[int, ...], phase: str) -> None:
    if code not in accepted:
        raise _reply_error(code, phase)


def _failure(error: OSError, phase: str) -> TransportError:
    if isinstance(error, smtplib.SMTPResponseException):
        return _reply_error(error.smtp_code, phase)
    # No STARTTLS or AUTH offered, or no AUTH method in common: our settings, not the server's mood.
    if isinstance(error, smtplib.SMTPNotSupportedError) or type(error) is smtplib.SMTPException:
        return TransportError("account", f"smtp:no_{phase}", f"the server does not offer a usable {phase}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return TransportError("account", "tls", "the server's certificate is not trusted")
    # Refused, unreachable, timed out or dropped before DATA: nothing was delivered.
    code = "timeout" if _timed_out(error) else "connection"
    return TransportError("retryable", code, f"{phase}: {type(error).__name__}")


def _timed_out(error: OSError) -> bool:
    # smtplib reports a read timeout as SMTPServerDisconnected, raised while handling it.
    return isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)


def _reply_error(code: int, phase: str) -> TransportError:
    """An SMTP refusal by its reply code and the step that drew it. Never quotes the reply:
    servers echo the address back in it."""
    if 400 <= code < 500:
        return TransportError("retryable", f"smtp:{code}", f"{phase} deferred")
    if 500 <= code < 600 and phase == "recipient":
        return TransportError("permanent", f"smtp:{code}", "recipient refused")
    if 500 <= code < 600 and phase == "data":
        # A 5xx after the recipient was accepted is usually about content or policy, not the
        # address: flagging the contact would stop every email; retries end at max attempts.
        return TransportError("retryable", f"smtp:{code}", "message refused")
    if 500 <= code < 600:
        return TransportError("account", f"smtp:{code}", f"{phase} refused")  # our login or sender
    return TransportError("retryable", f"smtp:{code}", f"{phase}: unexpected reply")


def _close(smtp: smtplib.SMTP, politely: bool) -> None:
    # After a timeout or refusal QUIT could hang for the whole timeout again: just drop the socket.
    try:
        if politely:
            smtp.quit()
            return
    except OSError:
        pass
    smtp.close()
