"""Courses (SPEC 6, 9): enrolling a patient in a campaign, their sessions booked, moved,
cancelled, completed or missed, and the enrollment paused, resumed, withdrawn or
completed. Each change is one transaction with a replan of the patient."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app.effects import Hints, Outcome, apply
from dripcare.app.patients import change, get_record
from dripcare.app.wording import when
from dripcare.domain import inputs
from dripcare.domain.campaign import Campaign
from dripcare.domain.inputs import BadInput
from dripcare.store import patients as patient_rows
from dripcare.store.bulk import insert_with_ids
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


def new_enrollments(session: Session, wanted: list[tuple[int, str]], now: datetime) -> list[int]:
    """Active enrollments from `now` for many (patient id, campaign) pairs in one statement."""
    return insert_with_ids(session, Enrollment.__table__, [
        dict(patient_id=patient_id, campaign_id=campaign_id, status="active", enrolled_at=now, footer_since=now)
        for patient_id, campaign_id in wanted])


def book_sessions(session: Session, sessions: list[dict]) -> None:
    """Many sessions in one statement (an import): rows of TreatmentSession's columns."""
    if sessions:
        session.execute(sa.insert(TreatmentSession.__table__), sessions)


def enroll(rt, ref: str, campaign_id: str, session_times: list[str], *, by: str,
           modality: str | None = None, location: str | None = None, duration: int = 60) -> Outcome[Enrollment]:
    """A session already in the past is booked as history, with a note (nothing is sent before it)."""
    campaign = _campaign(rt, campaign_id)
    modality = inputs.modality(modality)

    def act(session, patient, now, hints: Hints):
        starts = [inputs.local_datetime(t, patient.timezone, "--session") for t in session_times]
        current = session.execute(sa.select(Enrollment.id).where(
            Enrollment.patient_id == patient.id, Enrollment.campaign_id == campaign.id,
            Enrollment.status.in_(("active", "paused")))).scalar()
        if current is not None:
            raise BadInput(f"patient {patient.id} is already enrolled in {campaign.id} (enrollment {current}); "
                           f"add sessions with `dripcare session add`")
        enrollment = new_enrollment(session, patient.id, campaign.id, now)
        for start in sorted(starts):
            row = TreatmentSession(enrollment_id=enrollment.id, starts_at=start, duration_minutes=duration,
                                   modality=modality, location=location)
            session.add(row)
            session.flush()
            _note_if_past(hints, row, now)
        return enrollment

    return change(rt, ref, by, act)


def _campaign(rt, campaign_id: str) -> Campaign:
    if campaign_id not in rt.campaigns:
        known = ", ".join(sorted(rt.campaigns)) or "none"
        raise BadInput(f"campaign {campaign_id!r} not found in config/campaigns (known: {known})")
    return rt.campaigns[campaign_id]


def add_session(rt, ref: str, at: str, *, by: str, campaign_id: str | None = None,
                modality: str | None = None, duration: int = 60, location: str | None = None,
                external_id: str | None = None, past: bool = False) -> Outcome[TreatmentSession]:
    """Book a session; one before now only as history (`past`), planning nothing before now."""
    modality = inputs.modality(modality)

    def act(session, patient, now, hints: Hints):
        enrollment = _open_enrollment(session, patient, campaign_id)
        starts = _start(at, patient, now, past)
        row = TreatmentSession(enrollment_id=enrollment.id, starts_at=starts, duration_minutes=duration,
                               modality=modality, location=location,
                               external_id=_free_external_id(session, external_id, None))
        session.add(row)
        session.flush()
        _note_if_past(hints, row, now)
        return row

    return change(rt, ref, by, act)


def _start(at: str, patient: Patient, now: datetime, past: bool) -> datetime:
    """The typed start; a time before now is a typo unless staff say they record history."""
    starts = inputs.local_datetime(at, patient.timezone, "--at")
    if starts < now and not past:
        raise BadInput(f"--at {at!r} is in the past (it is now {when(now, patient.timezone)}); "
                       f"add --past to record a session that already took place")
    return starts


def _free_external_id(session: Session, text: str | None, session_id: int | None) -> str | None:
    """The EHR's appointment id, unique across sessions (None: not given or empty)."""
    value = (text or "").strip() or None
    if value is not None:
        other = patient_rows.session_with_external_id(session, value)
        if other is not None and other.id != session_id:
            patient_id = session.get(Enrollment, other.enrollment_id).patient_id
            raise BadInput(f"--external-id {value!r} already belongs to session {other.id} (patient {patient_id}); "
                           f"`dripcare timeline {patient_id}` shows it")
    return value


def _note_if_past(hints: Hints, row: TreatmentSession, now: datetime) -> None:
    if row.starts_at < now:
        hints.past_sessions.append((row.id, row.starts_at))


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


def _session_patient(session: Session, session_id: str) -> tuple[TreatmentSession, Patient]:
    row = get_record(session, TreatmentSession, session_id, "session", "`dripcare timeline PATIENT`")
    return row, session.get(Patient, session.get(Enrollment, row.enrollment_id).patient_id)


def change_session(rt, session_id: str, *, by: str, action: str | None = None, at: str | None = None,
                   external_id: str | None = None, past: bool = False) -> Outcome[TreatmentSession]:
    """Reschedule (`at`) or cancel / complete / no-show (`action`) one session."""
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        row, patient = _session_patient(session, session_id)

        def act(session, patient, now, hints: Hints):
            if at is not None:
                _reschedule(session, row, patient, at, external_id, past, now, hints)
            else:
                _mark(row, patient, action, now)
            session.add(row)
            session.flush()
            return row

        return apply(rt, session, patient, by, now, act)


def _reschedule(session: Session, row: TreatmentSession, patient: Patient, at: str, external_id: str | None,
                past: bool, now: datetime, hints: Hints) -> None:
    if row.status != "scheduled":
        raise BadInput(f"session {row.id} is {row.status}; only a scheduled session can be rescheduled")
    row.starts_at = _start(at, patient, now, past)
    if external_id is not None:
        row.external_id = _free_external_id(session, external_id, row.id)
    _note_if_past(hints, row, now)


def _mark(row: TreatmentSession, patient: Patient, action: str, now: datetime) -> None:
    if row.status != "scheduled" and not (action == "complete" and row.status == "no_show"):
        raise BadInput(f"session {row.id} is already {row.status}")
    if action in ("complete", "no-show") and row.starts_at > now:
        word = "completed" if action == "complete" else "a no-show"
        raise BadInput(f"session {row.id} has not started: it starts {when(row.starts_at, patient.timezone)}; "
                       f"it can be marked {word} once it has started")
    row.status = SESSION_ACTIONS[action]


def change_enrollment(rt, enrollment_id: str, action: str, *, by: str) -> Outcome[Enrollment]:
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        enrollment = get_record(session, Enrollment, enrollment_id, "enrollment", "`dripcare patient show PATIENT`")
        if enrollment.status not in ENROLLMENT_ACTIONS[action]:
            raise BadInput(f"enrollment {enrollment.id} is {enrollment.status}; cannot {action} it")

        def act(session, patient, now, hints):
            if action == "complete":
                enrollment.status, enrollment.completed_at = "completed", now
            else:
                enrollment.status = {"pause": "paused", "resume": "active", "withdraw": "withdrawn"}[action]
                if action == "resume" and enrollment.completed_at is not None:
                    enrollment.status = "completed"
            session.add(enrollment)
            session.flush()
            return enrollment

        return apply(rt, session, session.get(Patient, enrollment.patient_id), by, now, act)
