"""Telling the clinic a reply is waiting in `dripcare inbox` (SPEC 3.2 [inbox], 8, 10):
`notify_email` for every reply staff should read, and `urgent_sms` (the on-call phone)
texted at once for an urgent one. Never the reply's text or the patient's number: PHI
stays in the database, and these go to inboxes and phones we do not control.

The transports are the deployment's own (app/runtime.py `build_notifier`); a channel
whose settings are missing or wrong is off, said once at start, and the web process goes
on answering patients without it.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from dripcare.delivery.transports.base import Outgoing, TransportError

log = logging.getLogger("dripcare.notices")
NOTICE_LIFETIME = timedelta(hours=1)  # an hour-old notice is still worth an SMS queue slot at Twilio


def notice_email(reply_id: int, urgent: bool) -> tuple[str, str]:
    """Subject and body of the email: what is waiting and how to read it, nothing more."""
    subject = "URGENT: a patient reply is waiting in dripcare" if urgent else "A patient reply is waiting in dripcare"
    body = (f"{'An URGENT reply (words of crisis)' if urgent else 'A reply'} is waiting in the dripcare inbox "
            f"(reply {reply_id}).\nRead it with: dripcare inbox{' --urgent' if urgent else ''}\n"
            f"When it is dealt with: dripcare inbox handle {reply_id}\n\n"
            "The text is not in this email: patients' words stay in the dripcare database.\n")
    return subject, body


def notice_sms(reply_id: int, sms_name: str) -> str:
    return (f"{sms_name}: an URGENT patient reply is waiting. Read it now with: dripcare inbox --urgent "
            f"(reply {reply_id})")


class ClinicNotices:
    def __init__(self, rt, email=None, sms=None, off: dict[str, list[str]] | None = None):
        self.rt, self.email, self.sms = rt, email, sms
        self.off = off or {}  # channel -> the settings lines that turned it off

    def describe(self) -> list[str]:
        """What the web process says at start about its notices (no addresses: the clinic's)."""
        lines = [f"clinic notices by {channel} are off: {'; '.join(why)}" for channel, why in self.off.items()]
        for channel, transport in (("email", self.email), ("sms", self.sms)):
            if transport is not None and transport.development:
                lines.append(f"clinic notices by {channel} use the {transport.name} transport: nothing reaches "
                             "the clinic (development)")
        clinic = self.rt.clinic
        if self.email is not None and not clinic.notify_email:
            lines.append("clinic notices by email are off: clinic.toml [inbox] notify_email is not set")
        if self.sms is not None and not clinic.urgent_sms:
            lines.append("urgent replies are not texted: clinic.toml [inbox] urgent_sms is not set")
        return lines

    def reply_waiting(self, reply_id: int, urgent: bool) -> None:
        """Logged at once; sent off the request thread (Twilio waits for our TwiML, and a
        slow mail server must never hold back a crisis reply)."""
        log.warning("%s waiting in dripcare inbox: id %s", "urgent reply" if urgent else "reply", reply_id)
        clinic = self.rt.clinic  # read now: a reloaded clinic.toml may have changed the addresses
        sends = []
        if urgent and clinic.urgent_sms and self.sms is not None:
            sends.append((self.sms, self._outgoing("sms", clinic.urgent_sms, reply_id, urgent)))
        if clinic.notify_email and self.email is not None:
            sends.append((self.email, self._outgoing("email", clinic.notify_email, reply_id, urgent)))
        for transport, outgoing in sends:
            threading.Thread(target=_send, args=(transport, outgoing, reply_id), daemon=True,
                             name=f"notice-{outgoing.channel}-{reply_id}").start()

    def _outgoing(self, channel: str, to: str, reply_id: int, urgent: bool) -> Outgoing:
        now = self.rt.clock.now()
        if channel == "sms":
            subject, body = None, notice_sms(reply_id, self.rt.clinic.sms_name)
        else:
            subject, body = notice_email(reply_id, urgent)
        # An id of its own ("inbox-N"), apart from patient messages' ids: a status callback
        # naming it finds no message row and changes nothing.
        return Outgoing(message_id=f"inbox-{reply_id}", channel=channel, to=to, body=body, subject=subject,
                        expires_at=now + NOTICE_LIFETIME, now=now)


def _send(transport, outgoing: Outgoing, reply_id: int) -> None:
    try:
        transport.send(outgoing)
    except TransportError as error:
        log.error("could not tell the clinic by %s about reply %s: %s", outgoing.channel, reply_id, error.code)
    except Exception as error:  # a notice must never take the web process down
        log.error("could not tell the clinic by %s about reply %s: %s", outgoing.channel, reply_id,
                  type(error).__name__)
