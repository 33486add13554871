"""The one writer of consent (SPEC 5, 8): staff, import, SMS keywords, unsubscribe links
and carriers all record consent here, so the same rules hold whoever asks.

- Idempotent: a grant (or revocation) already in force for the current contact writes
  nothing, so the same grant twice leaves one row.
- A re-grant of SMS (after STOP, a new number, a carrier opt-out) makes the next SMS of
  every enrollment carry the footer again (SPEC 3.2).

The caller replans the patient in the same transaction (`Runtime.change` does).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain.contacts import CONSENT_SOURCES, CONTACT_WORD, contact_for
from dripcare.domain.inputs import BadInput
from dripcare.store import consent as consent_rows
from dripcare.store.models import Enrollment, Patient


def give(session: Session, patient: Patient, channel: str, granted: bool, at: datetime, *,
         source: str, by: str, evidence: str | None = None) -> bool:
    """Record consent given or withdrawn for the patient's current contact on `channel`;
    True when it changed what is in force."""
    if source not in CONSENT_SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    if not contact_for(patient, channel):
        raise BadInput(f"patient {patient.id} has no {CONTACT_WORD[channel]} to "
                       f"{'grant' if granted else 'revoke'} consent for; add one with `dripcare patient update`")
    if consent_rows.consent_in_force(session, patient)[channel] == granted:
        return False
    consent_rows.append(session, patient, channel, granted, at, source, by, evidence)
    if granted and channel == "sms":
        footer_owed_again(session, patient.id, at)
    return True


def footer_owed_again(session: Session, patient_id: int, at: datetime) -> None:
    """The next SMS of each of the patient's enrollments carries the footer again."""
    session.execute(sa.update(Enrollment).where(Enrollment.patient_id == patient_id).values(footer_since=at))


def flag_contact_invalid(session: Session, patient: Patient, channel: str) -> None:
    """A provider says this contact can never receive: flagged until staff change it."""
    from dripcare.domain.contacts import invalid_flag

    setattr(patient, invalid_flag(channel), True)
    session.add(patient)
    session.flush()
