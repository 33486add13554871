"""inbound_message rows (SPEC 5, 8): every SMS reply received, what it was taken as, the
patient it matched, and when and by whom staff marked it handled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import InboundMessage, Patient

BODY_LIMIT = 1600  # Twilio's longest message: anything longer is not a real SMS


@dataclass(frozen=True)
class InboxRow:
    id: int
    patient_id: int | None
    patient_name: str | None
    from_number: str
    body: str
    received_at: datetime
    taken_as: str
    urgent: bool
    handled_at: datetime | None
    handled_by: str | None
    handled_note: str | None
    timezone: str | None  # the patient's, for showing times; None when no patient has the number


def listing(session: Session, *, urgent_only: bool = False, include_handled: bool = False) -> list[InboxRow]:
    """Unhandled first, urgent first, then newest."""
    query = (sa.select(InboundMessage, Patient.first_name, Patient.last_name, Patient.timezone)
             .outerjoin(Patient, InboundMessage.patient_id == Patient.id)
             .order_by(InboundMessage.handled_at.is_not(None), InboundMessage.urgent.desc(),
                       InboundMessage.received_at.desc(), InboundMessage.id.desc()))
    if urgent_only:
        query = query.where(InboundMessage.urgent.is_(True))
    if not include_handled:
        query = query.where(InboundMessage.handled_at.is_(None))
    return [_row(m, first, last, tz) for m, first, last, tz in session.execute(query).all()]


def _row(m: InboundMessage, first: str | None, last: str | None, tz: str | None) -> InboxRow:
    name = f"{first} {last}" if first is not None else None
    return InboxRow(m.id, m.patient_id, name, m.from_number, m.body, m.received_at, m.taken_as, m.urgent,
                    m.handled_at, m.handled_by, m.handled_note, tz)


def find(session: Session, reply_id: int) -> InboundMessage | None:
    return session.get(InboundMessage, reply_id)


def mark_handled(session: Session, reply_id: int, by: str, note: str | None, at: datetime) -> bool:
    """Staff dealt with it; False when it was already marked (the first mark stands)."""
    result = session.execute(sa.update(InboundMessage).where(
        InboundMessage.id == reply_id, InboundMessage.handled_at.is_(None))
        .values(handled_at=at, handled_by=by, handled_note=note))
    return result.rowcount == 1


# --- a reply arriving ---------------------------------------------------------------------

def cut(body: str) -> str:
    """What is stored of a reply: at most BODY_LIMIT characters, without NUL (PostgreSQL
    text cannot hold one, and no phone sends one)."""
    return body[:BODY_LIMIT].replace("\x00", "\ufffd")


def received_before(session: Session, sid: str | None) -> bool:
    """Twilio may deliver one reply twice: its MessageSid says so."""
    return bool(sid) and session.execute(
        sa.select(InboundMessage.id).where(InboundMessage.provider_sid == sid).limit(1)).first() is not None


def patients_with_number(session: Session, phone: str) -> list[tuple[int, str]]:
    """(id, locale) of every patient with that number, oldest first."""
    if not phone:
        return []
    return [tuple(r) for r in session.execute(sa.select(Patient.id, Patient.locale)
                                             .where(Patient.phone == phone).order_by(Patient.id)).all()]


def add(session: Session, *, sender: str, body: str, at: datetime, taken_as: str, urgent: bool,
        sid: str | None, patient_ids: list[int]) -> list[int]:
    """One row per patient with that number, or one without a patient when none has it."""
    rows = [InboundMessage(patient_id=pid, from_number=sender, body=cut(body), received_at=at,
                           taken_as=taken_as, urgent=urgent, provider_sid=sid)
            for pid in (patient_ids or [None])]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]
