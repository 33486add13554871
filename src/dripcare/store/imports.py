"""What an import reads of the database (SPEC 9), for the whole file at once: the patients
it names by external id, their enrollments and sessions, the sessions it names by
appointment id (whoever they belong to), and the latest consent per contact. A handful
of statements per file, never one per row, so a 12,000-row export reads in moments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.bulk import in_slices
from dripcare.store.models import Consent, Enrollment, Patient, TreatmentSession



@dataclass
class Booked:
    """The database as the file's rows will be matched against it."""

    patients: dict[str, Patient] = field(default_factory=dict)  # by external id (the MRN)
    enrollments: dict[int, list[Enrollment]] = field(default_factory=dict)  # by patient id, oldest first
    sessions: dict[int, list[TreatmentSession]] = field(default_factory=dict)  # by enrollment id
    by_appointment: dict[str, TreatmentSession] = field(default_factory=dict)  # by the EHR's appointment id
    enrollment: dict[int, Enrollment] = field(default_factory=dict)  # every enrollment read, by id
    # The latest consent row per (patient, channel, contact): what is in force for that contact.
    consent: dict[tuple[int, str, str], bool] = field(default_factory=dict)


def load(session: Session, mrns: Iterable[str], appointments: Iterable[str]) -> Booked:
    booked = Booked()
    for chunk in in_slices(mrns):
        booked.patients.update((p.external_id, p) for p in session.execute(
            sa.select(Patient).where(Patient.external_id.in_(chunk))).scalars())
    patient_ids = [p.id for p in booked.patients.values()]
    _load_enrollments(session, booked, sa.select(Enrollment).where(Enrollment.patient_id.in_(patient_ids))
                      if patient_ids else None)
    _load_sessions(session, booked, list(booked.enrollment))
    _load_appointments(session, booked, appointments)
    _load_consent(session, booked, patient_ids)
    return booked


def _load_enrollments(session: Session, booked: Booked, query) -> None:
    if query is None:
        return
    by_patient: dict[int, list[Enrollment]] = defaultdict(list)
    for e in session.execute(query.order_by(Enrollment.id)).scalars():
        booked.enrollment[e.id] = e
        by_patient[e.patient_id].append(e)
    for patient_id, enrollments in by_patient.items():
        booked.enrollments.setdefault(patient_id, []).extend(enrollments)


def _load_sessions(session: Session, booked: Booked, enrollment_ids: list[int]) -> None:
    for chunk in in_slices(enrollment_ids):
        for s in session.execute(sa.select(TreatmentSession).where(TreatmentSession.enrollment_id.in_(chunk))
                                 .order_by(TreatmentSession.starts_at, TreatmentSession.id)).scalars():
            booked.sessions.setdefault(s.enrollment_id, []).append(s)
            if s.external_id:
                booked.by_appointment[s.external_id] = s


def _load_appointments(session: Session, booked: Booked, appointments: Iterable[str]) -> None:
    """Sessions the file names by appointment id that are not its patients' (another
    patient's, or a patient the file does not name by MRN): the rows are checked against them."""
    missing = [a for a in appointments if a not in booked.by_appointment]
    for chunk in in_slices(missing):
        for s in session.execute(sa.select(TreatmentSession).where(TreatmentSession.external_id.in_(chunk))).scalars():
            booked.by_appointment[s.external_id] = s
    unknown = {s.enrollment_id for s in booked.by_appointment.values()} - set(booked.enrollment)
    for chunk in in_slices(unknown):
        for e in session.execute(sa.select(Enrollment).where(Enrollment.id.in_(chunk))).scalars():
            booked.enrollment[e.id] = e


def _load_consent(session: Session, booked: Booked, patient_ids: list[int]) -> None:
    for chunk in in_slices(patient_ids):
        # Append-only: the row written last wins, whatever clock stamped it.
        latest = (sa.select(sa.func.max(Consent.id).label("id")).where(Consent.patient_id.in_(chunk))
                  .group_by(Consent.patient_id, Consent.channel, Consent.contact).subquery())
        rows = session.execute(sa.select(Consent.patient_id, Consent.channel, Consent.contact, Consent.granted)
                               .join(latest, Consent.id == latest.c.id)).all()
        booked.consent.update(((p, ch, contact), bool(granted)) for p, ch, contact, granted in rows)
