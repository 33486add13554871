"""What a provider's answer changes beyond its message row (SPEC 7 "Answers when sending"
and "Answers after sending"): the one owner, whether the answer came back when sending
(the dispatcher) or later in a Twilio status callback (the web process), so the same
code has the same consequences on either path.

- contact invalid (21211, 21614, 30005, 30006, SMTP 5xx on the recipient): the contact is
  flagged until staff change it, and its other pending messages cancelled;
- carrier opt-out (21610): SMS consent revoked (source `carrier`), pending SMS cancelled;
- account or configuration (20003, 30032, 30034, SMTP auth): the channel pauses for
  every worker for 10 minutes;
- carrier filtering (30007): counted (`status` shows it).

An answer about a contact the patient no longer has (staff changed it since) changes
nothing of the patient.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session

from dripcare.app import consent
from dripcare.delivery.transports.twilio_codes import TWILIO_CODES, classify_callback_code
from dripcare.domain.contacts import contact_for
from dripcare.domain.privacy import mask_contact
from dripcare.store import channels
from dripcare.store.models import Message, Patient

log = logging.getLogger("dripcare.outcomes")
# A refusal's TransportError kind -> what it changes (the other kinds change only the row).
SEND_ACTIONS = {"permanent": "contact_invalid", "opted_out": "opted_out", "account": "account"}


class Outcomes:
    def __init__(self, rt):
        self.rt = rt

    def after_refusal(self, session: Session, m: Message, kind: str, code: str, detail: str,
                      now: datetime) -> None:
        """The dispatcher's port: a refusal when sending."""
        action = SEND_ACTIONS.get(kind)
        if action:
            self.apply(session, m, action, code, detail, now, by="dispatch")

    def after_callback(self, session: Session, m: Message, code: str, now: datetime) -> None:
        """A status callback's ErrorCode, read from the table the transport uses too."""
        known = TWILIO_CODES.get(int(code)) if code.isdigit() else None
        self.apply(session, m, classify_callback_code(code), f"twilio:{code}",
                   known.meaning if known else "", now, by="twilio")

    def apply(self, session: Session, m: Message, action: str, code: str, detail: str, now: datetime,
              by: str) -> None:
        if action == "account":
            channels.pause(session, m.channel, f"{code}: {detail}"[:200], now, now + channels.AUTO_RESUME)
            log.warning("%s paused for %s: %s (%s)", m.channel, channels.AUTO_RESUME, code, detail)
            return
        if action == "filtered":
            log.warning("message %s filtered by the carrier (%s)", m.id, code)
            return
        if action not in ("contact_invalid", "opted_out"):
            return
        patient = session.get(Patient, m.patient_id)
        current = contact_for(patient, m.channel)
        if m.to_contact and m.to_contact != current:
            log.info("message %s: %s is about a %s the patient no longer has; nothing changed",
                     m.id, code, "number" if m.channel == "sms" else "address")
            return
        if action == "contact_invalid":
            consent.flag_contact_invalid(session, patient, m.channel)
        else:
            consent.give(session, patient, m.channel, False, now, source="carrier", by="carrier", evidence=code)
        self.rt.replan(session, patient, by, now)
        log.warning("message %s: %s, %s for %s", m.id, code, action, mask_contact(current))
