"""Consent rows (SPEC 5): append-only; the latest row for the patient's current contact
is the consent in force. Reads and the append; `app.consent` decides when to append."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain.contacts import CHANNELS, contact_for
from dripcare.store.models import Consent, Patient


def consent_in_force(session: Session, patient: Patient) -> dict[str, bool]:
    """Per channel: granted for the contact the patient has now. A changed phone or
    email has no consent until it is given again (SPEC 5)."""
    return in_force_for(session, [patient])[patient.id]


def in_force_for(session: Session, patients: list[Patient]) -> dict[int, dict[str, bool]]:
    """consent_in_force for many patients in one statement (the send-time check reads a
    whole group of messages at once)."""
    wanted = {(p.id, c): contact_for(p, c) for p in patients for c in CHANNELS}
    result = {p.id: dict.fromkeys(CHANNELS, False) for p in patients}
    ids = list(result)
    if not ids:
        return result
    # Append-only: the row written last wins, whatever clock stamped it.
    latest = (sa.select(Consent.patient_id, Consent.channel, Consent.contact, sa.func.max(Consent.id).label("id"))
              .where(Consent.patient_id.in_(ids)).group_by(Consent.patient_id, Consent.channel, Consent.contact)
              .subquery())
    rows = session.execute(sa.select(latest.c.patient_id, latest.c.channel, latest.c.contact, Consent.granted)
                           .join(Consent, Consent.id == latest.c.id)).all()
    for patient_id, channel, contact, granted in rows:
        if channel in CHANNELS and contact and wanted.get((patient_id, channel)) == contact:
            result[patient_id][channel] = bool(granted)
    return result


def append(session: Session, patient: Patient, channel: str, granted: bool, at: datetime,
           source: str, by: str, evidence: str | None) -> Consent:
    row = Consent(patient_id=patient.id, channel=channel, contact=contact_for(patient, channel),
                  granted=granted, at=at, source=source, evidence=evidence, by=by)
    session.add(row)
    session.flush()
    return row


def append_many(session: Session, changes: list[tuple[Patient, str, bool, str | None]], at: datetime,
                source: str, by: str) -> None:
    """Many appends in one statement: (patient, channel, granted, evidence)."""
    if changes:
        session.execute(sa.insert(Consent.__table__), [
            dict(patient_id=p.id, channel=c, contact=contact_for(p, c), granted=g, at=at, source=source,
                 evidence=e, by=by) for p, c, g, e in changes])


def history(session: Session, patient_id: int) -> list[Consent]:
    """Every consent change of one patient, in the order written (records requests)."""
    return session.execute(sa.select(Consent).where(Consent.patient_id == patient_id)
                           .order_by(Consent.id)).scalars().all()
