"""The fresh read behind the check at the moment of sending (SPEC 7): for a group of
claimed rows, everything the check and the rendering need, in a handful of statements
whatever the group's size (rows, patients, enrollments, sessions, consent, what went out
lately, footers given)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain.statuses import WENT_OUT, MessageStatus as S
from dripcare.store.consent import in_force_for
from dripcare.store.models import Enrollment, Message, Patient, TreatmentSession


@dataclass
class SendFacts:
    """Read-only rows (attribute access by column name, as the models have it): the check
    reads thousands a second, and plain rows skip the ORM's bookkeeping."""

    message: sa.Row
    patient: sa.Row
    enrollment: sa.Row
    sessions: list[sa.Row]  # the enrollment's sessions, every status, by start
    consented: bool  # consent in force now for the row's channel and the patient's contact


_MESSAGE, _PATIENT, _ENROLLMENT, _SESSION = (m.__table__ for m in (Message, Patient, Enrollment, TreatmentSession))


def load_group(session: Session, ids: list[int], worker_id: str) -> dict[int, SendFacts]:
    """The rows of `ids` still claimed by this worker, with what they depend on."""
    messages = session.execute(sa.select(_MESSAGE).where(
        _MESSAGE.c.id.in_(ids), _MESSAGE.c.status == S.SENDING, _MESSAGE.c.claimed_by == worker_id)).all()
    if not messages:
        return {}
    patients = {p.id: p for p in session.execute(sa.select(_PATIENT).where(
        _PATIENT.c.id.in_({m.patient_id for m in messages})))}
    enrollments = {e.id: e for e in session.execute(sa.select(_ENROLLMENT).where(
        _ENROLLMENT.c.id.in_({m.enrollment_id for m in messages})))}
    sessions: dict[int, list[sa.Row]] = defaultdict(list)
    for s in session.execute(sa.select(_SESSION).where(_SESSION.c.enrollment_id.in_(list(enrollments)))
                             .order_by(_SESSION.c.starts_at, _SESSION.c.id)):
        sessions[s.enrollment_id].append(s)
    consent = in_force_for(session, list(patients.values()))
    return {m.id: SendFacts(m, patients[m.patient_id], enrollments[m.enrollment_id],
                            sessions[m.enrollment_id], consent[m.patient_id][m.channel]) for m in messages}


def went_out_since(session: Session, patient_ids: set[int], since: datetime,
                   exclude: set[int]) -> dict[tuple[int, str], list[datetime]]:
    """When each patient's messages went out on each channel since `since` (the daily cap
    counts them per local day, again at send time)."""
    when = sa.func.coalesce(Message.sent_at, Message.attempted_at)
    rows = session.execute(sa.select(Message.patient_id, Message.channel, when).where(
        Message.patient_id.in_(patient_ids), Message.status.in_(WENT_OUT), when >= since,
        Message.id.not_in(exclude))).all()
    found: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for patient_id, channel, at in rows:
        if at is not None:
            found[(patient_id, channel)].append(at.replace(tzinfo=since.tzinfo) if at.tzinfo is None else at)
    return found


def footers_given(session: Session, enrollments: list, exclude: set[int]) -> set[int]:
    """Enrollments whose footer already went out since it was last owed (SPEC 3.2)."""
    if not enrollments:
        return set()
    since = {e.id: e.footer_since for e in enrollments}
    rows = session.execute(sa.select(Message.enrollment_id, sa.func.max(Message.attempted_at)).where(
        Message.enrollment_id.in_(list(since)), Message.channel == "sms", Message.footer.is_(True),
        Message.status.in_(WENT_OUT), Message.id.not_in(exclude)).group_by(Message.enrollment_id)).all()
    return {e for e, last in rows if last is not None and last >= since[e]}
