"""Choose each channel's transport from settings (SPEC 3.1).

A real transport with missing credentials is a start-up error (SettingsError, one line),
never a quiet fallback to the console.
"""

from __future__ import annotations

from dripcare.config.settings import Settings, SettingsError
from dripcare.delivery.transports.base import ERROR_KINDS, Outgoing, Transport, TransportError, email_headers, mask_contact
from dripcare.delivery.transports.console import ConsoleTransport
from dripcare.delivery.transports.files import FileTransport

__all__ = ["ERROR_KINDS", "Outgoing", "Transport", "TransportError", "build_transports",
           "email_headers", "mask_contact"]

DEFAULT_EMAIL_FROM = "dripcare@localhost"


def build_transports(settings: Settings, *, console=None) -> dict[str, Transport]:
    """{"sms": ..., "email": ...} as DRIPCARE_SMS_TRANSPORT / DRIPCARE_EMAIL_TRANSPORT say."""
    return {"sms": _sms(settings, console), "email": _email(settings, console)}


def _sms(settings: Settings, console) -> Transport:
    kind = settings.sms_transport
    if kind == "console":
        return ConsoleTransport("sms", console)
    if kind == "file":
        return FileTransport("sms", settings.outbox_dir)
    from dripcare.delivery.transports.twilio_sms import TwilioSms  # the SDK loads only where it is used

    twilio = settings.twilio()
    settings.unsubscribe_keys()  # a real transport needs DRIPCARE_SECRET_KEY
    return TwilioSms(**twilio, public_base_url=settings.public_base_url)


def _email(settings: Settings, console) -> Transport:
    kind = settings.email_transport
    if kind == "console":
        return ConsoleTransport("email", console)
    if kind == "file":
        return FileTransport("email", settings.outbox_dir, settings.email_from or DEFAULT_EMAIL_FROM,
                             settings.email_reply_to)
    from dripcare.delivery.transports.smtp_email import SmtpEmail

    smtp = settings.smtp()
    settings.unsubscribe_keys()  # a real transport needs DRIPCARE_SECRET_KEY
    if settings.public_base_url is None:
        # Every email carries a one-click unsubscribe link (SPEC 7 "Email"), built on this URL.
        raise SettingsError("DRIPCARE_PUBLIC_BASE_URL is not set; the smtp email transport needs it for unsubscribe links")
    return SmtpEmail(**smtp)
