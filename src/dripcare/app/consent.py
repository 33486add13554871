"""The one writer of consent (SPEC 5, 8): staff, import, SMS keywords, unsubscribe links
and carriers all record consent here, so the same rules hold whoever asks.

- Idempotent: a grant (or revocation) already in force for the current contact writes
  nothing, so the same grant twice leaves one row.
- A re-grant of SMS (after STOP, a new number, a carrier opt-out) makes the next SMS of
  every enrollment carry the footer again (SPEC 3.2).

The caller replans the patient in the same transaction (`app.patients.change` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain.contacts import CONSENT_SOURCES, CONTACT_WORD, contact_for
from dripcare.domain.inputs import BadInput
from dripcare.store import consent as consent_rows
from dripcare.store.models import Enrollment, Patient


@dataclass(frozen=True)
class Wish:
    """Consent as someone gave or withdrew it, for one patient's current contact."""

    patient: Patient
    channel: str
    granted: bool
    evidence: str | None = None


def give(session: Session, patient: Patient, channel: str, granted: bool, at: datetime, *,
         source: str, by: str, evidence: str | None = None) -> bool:
    """Record consent given or withdrawn for the patient's current contact on `channel`;
    True when it changed what is in force."""
    return give_many(session, [Wish(patient, channel, granted, evidence)], at, source=source, by=by) == 1


def give_many(session: Session, wishes: list[Wish], at: datetime, *, source: str, by: str) -> int:
    """`give` for many patients at once (an import): one read of what is in force, the
    changes appended together. How many changed what is in force."""
    if source not in CONSENT_SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    for wish in wishes:
        if not contact_for(wish.patient, wish.channel):
            raise BadInput(f"patient {wish.patient.id} has no {CONTACT_WORD[wish.channel]} to "
                           f"{'grant' if wish.granted else 'revoke'} consent for; add one with "
                           f"`dripcare patient update`")
    in_force = consent_rows.in_force_for(session, list({w.patient.id: w.patient for w in wishes}.values()))
    changed = []
    for wish in wishes:
        if in_force[wish.patient.id][wish.channel] != wish.granted:
            in_force[wish.patient.id][wish.channel] = wish.granted  # a second wish in the list sees the first
            changed.append(wish)
    consent_rows.append_many(session, [(w.patient, w.channel, w.granted, w.evidence) for w in changed],
                             at, source, by)
    regranted = sorted({w.patient.id for w in changed if w.granted and w.channel == "sms"})
    if regranted:
        footer_owed_again(session, regranted, at)
    return len(changed)


def footer_owed_again(session: Session, patient_ids: list[int], at: datetime) -> None:
    """The next SMS of each of these patients' enrollments carries the footer again."""
    session.execute(sa.update(Enrollment).where(Enrollment.patient_id.in_(patient_ids)).values(footer_since=at))


def flag_contact_invalid(session: Session, patient: Patient, channel: str) -> None:
    """A provider says this contact can never receive: flagged until staff change it."""
    from dripcare.domain.contacts import invalid_flag

    setattr(patient, invalid_flag(channel), True)
    session.add(patient)
    session.flush()
