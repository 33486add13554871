"""The inbox (SPEC 8, 9): SMS replies as they arrive, and as staff read and mark them
handled.

A reply arriving (`receive`): stored (cut at 1,600 characters) once per patient with that
number, once only per Twilio MessageSid; an opt-out or opt-in changes SMS consent of every
one of those patients through the one consent writer; the clinic is told that a reply
waits (never what it says). What is texted back is app/answers.py's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dripcare.app.patients import get_record, set_consent
from dripcare.domain import replies as reading_rules
from dripcare.domain.inputs import BadInput
from dripcare.domain.privacy import mask_contact
from dripcare.domain.replies import Reading
from dripcare.store import inbound
from dripcare.store.db import transaction
from dripcare.store.inbound import BODY_LIMIT, InboxRow
from dripcare.store.models import InboundMessage

__all__ = ["BODY_LIMIT", "InboxRow", "Received", "handle", "receive", "replies"]

log = logging.getLogger("dripcare.inbox")
EVIDENCE_LIMIT = 500  # of the patient's words kept on the consent row as its evidence


def replies(rt, *, urgent_only: bool = False, include_handled: bool = False) -> list[InboxRow]:
    """Unhandled replies (every one with `include_handled`), unhandled and urgent first."""
    with Session(rt.engine) as session:
        return inbound.listing(session, urgent_only=urgent_only, include_handled=include_handled)


def handle(rt, reply_id: str, *, by: str, note: str | None = None) -> InboxRow:
    """Mark one reply handled, with who and when; refused when it already was."""
    with transaction(rt.engine) as session:
        row = get_record(session, InboundMessage, reply_id, "reply", "`dripcare inbox`")
        if not inbound.mark_handled(session, row.id, by, note, rt.clock.now()):
            raise BadInput(f"reply {row.id} was already handled by {row.handled_by} at "
                           f"{row.handled_at.isoformat()}; `dripcare inbox --all` shows it")
    return next(r for r in replies(rt, include_handled=True) if r.id == row.id)


# --- a reply arriving -------------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    reading: Reading
    reply_ids: tuple[int, ...]  # one per patient with that number (one without a patient if none)
    patient_ids: tuple[int, ...]
    locale: str  # for what is texted back: the first patient's, else the clinic's
    repeat: bool = False  # this MessageSid came before: nothing was done again


def receive(rt, notices, sender: str, body: str, sid: str | None) -> Received:
    """Store, change consent, tell the clinic. A repeat delivery changes nothing."""
    text = inbound.cut(body)
    reading = reading_rules.read(text)
    sender = sender.strip()[:40]
    stored = _store(rt, sender, text, sid, reading)
    if stored.repeat:
        log.info("inbound %s from %s received before: nothing done again", (sid or "-")[:40], mask_contact(sender))
        return stored
    log.info("inbound from %s taken as %s%s (replies %s, %d patient(s))", mask_contact(sender), reading.taken_as,
             " and opt-out" if reading.taken_as == "crisis" and reading.opt_out else "",
             ",".join(map(str, stored.reply_ids)), len(stored.patient_ids))
    if reading.opt_out or reading.taken_as == "opt_in":
        _change_consent(rt, stored.patient_ids, granted=not reading.opt_out, evidence=text[:EVIDENCE_LIMIT])
    if reading.taken_as in ("crisis", "reply"):
        notices.reply_waiting(stored.reply_ids[0], urgent=reading.urgent)
    return stored


def _store(rt, sender: str, text: str, sid: str | None, reading: Reading) -> Received:
    try:
        with transaction(rt.engine) as session:
            patients = inbound.patients_with_number(session, sender)
            locale = patients[0][1] if patients else rt.clinic.locale
            ids = [pid for pid, _ in patients]
            if inbound.received_before(session, sid):
                return Received(reading, (), tuple(ids), locale, repeat=True)
            reply_ids = inbound.add(session, sender=sender, body=text, at=rt.clock.now(),
                                    taken_as=reading.taken_as, urgent=reading.urgent, sid=sid, patient_ids=ids)
    except IntegrityError:  # the same delivery, stored a moment ago by another web process
        return Received(reading, (), tuple(ids), locale, repeat=True)
    return Received(reading, tuple(reply_ids), tuple(ids), locale)


def _change_consent(rt, patient_ids, *, granted: bool, evidence: str) -> None:
    """STOP or START for every patient with that number, each in its own transaction
    (consent and replan together); consent already where the patient asks writes nothing."""
    what = "opt-in" if granted else "opt-out"
    for patient_id in patient_ids:
        try:
            set_consent(rt, str(patient_id), "sms", granted, source="sms_keyword", by="sms", evidence=evidence)
        except Exception as error:  # one patient's failure must not cost the others their STOP
            # The error's own text can quote SQL parameters (the patient's words): its type only.
            log.error("patient %s: could not record the SMS %s (%s); record it with `dripcare consent %s %s "
                      "--channel sms`", patient_id, what, type(error).__name__,
                      "grant" if granted else "revoke", patient_id)
