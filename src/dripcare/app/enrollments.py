"""Courses (SPEC 6, 9): enrolling a patient in a campaign, their sessions booked, moved,
cancelled, completed or missed, and the enrollment paused, resumed, withdrawn or
completed. Each change is one transaction with a replan of the patient."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app.patients import get_record
from dripcare.domain import inputs
from dripcare.domain.campaign import Campaign
from dripcare.domain.inputs import BadInput
from dripcare.domain.statuses import OPEN_ENROLLMENT
from dripcare.store.db import transaction
from dripcare.store.models import Enrollment, Patient, TreatmentSession

SESSION_ACTIONS = {"cancel": "cancelled", "complete": "completed", "no-show": "no_show"}
ENROLLMENT_ACTIONS = {"pause": ("active",), "resume": ("paused",), "withdraw": ("active", "paused", "completed"),
                      "complete": ("active",)}


def new_enrollment(session: Session, patient_id: int, campaign_id: str, now: datetime) -> Enrollment:
    """An active enrollment from `now`; its first SMS will carry the footer."""
    enrollment = Enrollment(patient_id=patient_id, campaign_id=campaign_id, status="active",
                            enrolled_at=now, footer_since=now)
    session.add(enrollment)
    session.flush()
    return enrollment


def enroll(rt, ref: str, campaign_id: str, session_times: list[str], *, by: str,
           modality: str | None = None, location: str | None = None, duration: int = 60) -> Enrollment:
    campaign = _campaign(rt, campaign_id)

    def act(session, patient, now):
        starts = [inputs.local_datetime(t, patient.timezone, "--session") for t in session_times]
        current = session.execute(sa.select(Enrollment.id).where(
            Enrollment.patient_id == patient.id, Enrollment.campaign_id == campaign.id,
            Enrollment.status.in_(("active", "paused")))).scalar()
        if current is not None:
            raise BadInput(f"patient {patient.id} is already enrolled in {campaign.id} (enrollment {current}); "
                           f"add sessions with `dripcare session add`")
        enrollment = new_enrollment(session, patient.id, campaign.id, now)
        for start in sorted(starts):
            session.add(TreatmentSession(enrollment_id=enrollment.id, starts_at=start, duration_minutes=duration,
                                         modality=modality, location=location))
        session.flush()
        return enrollment

    return rt.change(ref, by, act)


def _campaign(rt, campaign_id: str) -> Campaign:
    if campaign_id not in rt.campaigns:
        known = ", ".join(sorted(rt.campaigns)) or "none"
        raise BadInput(f"campaign {campaign_id!r} not found in config/campaigns (known: {known})")
    return rt.campaigns[campaign_id]


def add_session(rt, ref: str, at: str, *, by: str, campaign_id: str | None = None,
                modality: str | None = None, duration: int = 60, location: str | None = None) -> TreatmentSession:
    def act(session, patient, now):
        enrollment = _open_enrollment(session, patient, campaign_id)
        row = TreatmentSession(enrollment_id=enrollment.id, starts_at=inputs.local_datetime(at, patient.timezone, "--at"),
                               duration_minutes=duration, modality=modality, location=location)
        session.add(row)
        session.flush()
        return row

    return rt.change(ref, by, act)


def _open_enrollment(session: Session, patient: Patient, campaign_id: str | None) -> Enrollment:
    query = sa.select(Enrollment).where(Enrollment.patient_id == patient.id,
                                        Enrollment.status.in_(("active", "paused", "completed")))
    if campaign_id:
        query = query.where(Enrollment.campaign_id == campaign_id)
    enrollments = session.execute(query.order_by(Enrollment.id)).scalars().all()
    if not enrollments:
        where = f" in campaign {campaign_id!r}" if campaign_id else ""
        raise BadInput(f"patient {patient.id} is not enrolled{where}; enroll them first with `dripcare enroll`")
    if len(enrollments) > 1:
        raise BadInput(f"patient {patient.id} is in several campaigns; say which with --campaign")
    return enrollments[0]


def _session_patient(session: Session, session_id: str) -> tuple[TreatmentSession, int]:
    row = get_record(session, TreatmentSession, session_id, "session", "`dripcare timeline PATIENT`")
    return row, session.get(Enrollment, row.enrollment_id).patient_id


def change_session(rt, session_id: str, *, by: str, action: str | None = None,
                   at: str | None = None) -> TreatmentSession:
    """Reschedule (`at`) or cancel / complete / no-show (`action`) one session."""
    with transaction(rt.engine) as session:
        row, patient_id = _session_patient(session, session_id)
        patient = session.get(Patient, patient_id)
        if at is not None:
            if row.status != "scheduled":
                raise BadInput(f"session {row.id} is {row.status}; only a scheduled session can be rescheduled")
            row.starts_at = inputs.local_datetime(at, patient.timezone, "--at")
        else:
            if row.status != "scheduled" and not (action == "complete" and row.status == "no_show"):
                raise BadInput(f"session {row.id} is already {row.status}")
            row.status = SESSION_ACTIONS[action]
        session.add(row)
        session.flush()
        rt.replan(session, patient, by)
        return row


def change_enrollment(rt, enrollment_id: str, action: str, *, by: str) -> Enrollment:
    with transaction(rt.engine) as session:
        enrollment = get_record(session, Enrollment, enrollment_id, "enrollment", "`dripcare patient show PATIENT`")
        if enrollment.status not in ENROLLMENT_ACTIONS[action]:
            raise BadInput(f"enrollment {enrollment.id} is {enrollment.status}; cannot {action} it")
        now = rt.clock.now()
        if action == "complete":
            enrollment.status, enrollment.completed_at = "completed", now
        else:
            enrollment.status = {"pause": "paused", "resume": "active", "withdraw": "withdrawn"}[action]
            if action == "resume" and enrollment.completed_at is not None:
                enrollment.status = "completed"
        session.add(enrollment)
        session.flush()
        rt.replan(session, session.get(Patient, enrollment.patient_id), by)
        return enrollment
