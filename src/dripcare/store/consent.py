"""Consent: append-only rows; the latest for the patient's current contact is in force."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import Consent, Patient

CHANNELS = ("sms", "email")
SOURCES = ("staff", "import", "sms_keyword", "email_unsubscribe", "carrier")


def contact_for(patient: Patient, channel: str) -> str | None:
    return patient.phone if channel == "sms" else patient.email


def consent_in_force(session: Session, patient: Patient) -> dict[str, bool]:
    """Per channel: granted for the contact the patient has now. A changed phone or
    email has no consent until it is given again (SPEC 5)."""
    result = {}
    for channel in CHANNELS:
        contact = contact_for(patient, channel)
        latest = session.execute(
            sa.select(Consent.granted)
            .where(Consent.patient_id == patient.id, Consent.channel == channel, Consent.contact == contact)
            # Append-only: the row written last wins, whatever clock stamped it.
            .order_by(Consent.id.desc()).limit(1)).scalar()
        result[channel] = bool(contact) and bool(latest)
    return result


def record_consent(session: Session, patient: Patient, channel: str, granted: bool, at: datetime,
                   source: str, by: str, evidence: str | None = None) -> Consent:
    contact = contact_for(patient, channel)
    if not contact:
        raise ValueError(f"patient {patient.id} has no {'phone' if channel == 'sms' else 'email'} to "
                         f"{'grant' if granted else 'revoke'} consent for; add one with `dripcare patient update`")
    row = Consent(patient_id=patient.id, channel=channel, contact=contact, granted=granted, at=at,
                  source=source, evidence=evidence, by=by)
    session.add(row)
    session.flush()
    return row
