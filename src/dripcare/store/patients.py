"""Reads of patients, their enrollments and sessions (SPEC 5): what staff listings and the
change summaries need. Writes stay with the use cases in `app/`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import Enrollment, Patient, TreatmentSession


def every_patient(session: Session) -> list[Patient]:
    return session.execute(sa.select(Patient).order_by(Patient.id)).scalars().all()


def enrollments_of(session: Session, patient_id: int) -> list[Enrollment]:
    return session.execute(sa.select(Enrollment).where(Enrollment.patient_id == patient_id)
                           .order_by(Enrollment.id)).scalars().all()


def sessions_of(session: Session, enrollment_id: int) -> list[TreatmentSession]:
    """One enrollment's sessions in the order they take place."""
    return session.execute(sa.select(TreatmentSession).where(TreatmentSession.enrollment_id == enrollment_id)
                           .order_by(TreatmentSession.starts_at, TreatmentSession.id)).scalars().all()


def session_with_external_id(session: Session, external_id: str) -> TreatmentSession | None:
    """The session holding an EHR appointment id (unique when given)."""
    return session.execute(sa.select(TreatmentSession)
                           .where(TreatmentSession.external_id == external_id)).scalars().first()


def enrolled_patient_ids(session: Session) -> list[int]:
    return session.execute(sa.select(Enrollment.patient_id).distinct()
                           .order_by(Enrollment.patient_id)).scalars().all()


def patients_by_id(session: Session, ids: list[int]) -> list[Patient]:
    return session.execute(sa.select(Patient).where(Patient.id.in_(ids)).order_by(Patient.id)).scalars().all()
