"""The use cases the CLI, import and web share. Each is one transaction: the change,
then a reconcile of the patient's plan, so the outbox is never out of step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dripcare.domain import inputs
from dripcare.store import outbox
from dripcare.config.campaigns import Campaign
from dripcare.config.clinic import Clinic
from dripcare.config.clock import Clock
from dripcare.store.consent import CHANNELS, consent_in_force, record_consent
from dripcare.store.db import transaction
from dripcare.domain.inputs import BadInput
from dripcare.store.models import Enrollment, Message, Patient, TreatmentSession
from dripcare.domain.planner import PENDING
from dripcare.app.reconcile import Changes, reconcile_patient

SESSION_ACTIONS = {"cancel": "cancelled", "complete": "completed", "no-show": "no_show"}
ENROLLMENT_ACTIONS = {"pause": ("active",), "resume": ("paused",), "withdraw": ("active", "paused", "completed"),
                      "complete": ("active",)}


@dataclass
class Runtime:
    """What every use case needs: the database, the clinic's files, and the clock."""

    engine: Engine
    clinic: Clinic
    campaigns: dict[str, Campaign]
    clock: Clock

    def replan(self, session: Session, patient: Patient, by: str | None, now: datetime | None = None) -> Changes:
        return reconcile_patient(session, patient, self.clinic, self.campaigns, now or self.clock.now(), by)

    def change(self, patient_ref: str | int, by: str | None, act: Callable[[Session, Patient, datetime], object]):
        """Find the patient, apply `act`, replan, commit: all or nothing, at one instant
        (a step due at the change itself is planned at it, not a moment later)."""
        now = self.clock.now()
        with transaction(self.engine) as session:
            patient = find_patient(session, patient_ref)
            result = act(session, patient, now)
            self.replan(session, patient, by, now)
            return result


def find_patient(session: Session, ref: str | int) -> Patient:
    """A numeric id, or `mrn:<external id>` (a value that is not all digits is an external id too)."""
    text = str(ref).strip()
    if text.isdigit():
        patient = session.get(Patient, int(text))
    else:
        external = text[4:] if text.lower().startswith("mrn:") else text
        patient = session.execute(sa.select(Patient).where(Patient.external_id == external)).scalar()
    if patient is None:
        raise BadInput(f"patient {text!r} not found; `dripcare patient list` shows who is enrolled")
    return patient


def _get(session: Session, model, ref: str, what: str):
    row = session.get(model, int(ref)) if str(ref).strip().isdigit() else None
    if row is None:
        raise BadInput(f"{what} {ref!r} not found")
    return row


def add_patient(rt: Runtime, *, first_name: str, last_name: str, preferred_name: str | None = None,
                phone: str | None = None, email: str | None = None, timezone: str | None = None,
                locale: str | None = None, discreet: bool = False, external_id: str | None = None,
                consent: list[str] = (), consent_source: str | None = None, by: str) -> Patient:
    values = _contact_values(rt, phone=phone, email=email, timezone=timezone)
    for channel in consent:
        inputs.choice(channel, CHANNELS, "--consent")
    if not first_name.strip() or not last_name.strip():
        raise BadInput("--first-name and --last-name must not be empty")
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        if external_id and session.execute(sa.select(Patient.id).where(Patient.external_id == external_id)).scalar():
            raise BadInput(f"external id {external_id!r} already belongs to another patient")
        patient = Patient(first_name=first_name.strip(), last_name=last_name.strip(),
                          preferred_name=preferred_name or None, external_id=external_id or None,
                          timezone=values.get("timezone", rt.clinic.timezone), locale=locale or rt.clinic.locale,
                          discreet=discreet, phone=values.get("phone"), email=values.get("email"), created_at=now)
        session.add(patient)
        session.flush()
        for channel in dict.fromkeys(c.strip().lower() for c in consent):
            _consent(session, patient, channel, True, now, "staff", by, consent_source or "recorded at patient add")
        return patient


def _contact_values(rt: Runtime, *, phone=None, email=None, timezone=None) -> dict:
    """Checks every given value before anything is written."""
    values = {}
    if phone is not None:
        values["phone"] = inputs.phone(phone, rt.clinic.country) if phone.strip() else None
    if email is not None:
        values["email"] = inputs.email(email) if email.strip() else None
    if timezone is not None:
        values["timezone"] = inputs.timezone_name(timezone)
    return values


def _consent(session, patient, channel, granted, now, source, by, evidence):
    try:
        return record_consent(session, patient, channel, granted, now, source, by, evidence)
    except ValueError as error:
        raise BadInput(str(error)) from None


def update_patient(rt: Runtime, ref: str, *, by: str, phone=None, email=None, timezone=None,
                   **fields) -> Patient:
    """Changing a phone or email clears its invalid flag and needs consent again (SPEC 5)."""
    values = _contact_values(rt, phone=phone, email=email, timezone=timezone)
    values.update({k: v for k, v in fields.items() if v is not None})

    def act(session, patient, now):
        if "external_id" in values and session.execute(sa.select(Patient.id).where(
                Patient.external_id == values["external_id"], Patient.id != patient.id)).scalar():
            raise BadInput(f"external id {values['external_id']!r} already belongs to another patient")
        change_patient(session, patient, values)
        return patient

    return rt.change(ref, by, act)


def change_patient(session: Session, patient: Patient, values: dict) -> None:
    """A new phone or email clears its invalid flag; consent does not follow it (SPEC 5)."""
    if "phone" in values and values["phone"] != patient.phone:
        patient.phone_invalid = False
    if "email" in values and values["email"] != patient.email:
        patient.email_invalid = False
    for key, value in values.items():
        setattr(patient, key, value)
    session.add(patient)
    session.flush()


def new_enrollment(session: Session, patient_id: int, campaign_id: str, now: datetime) -> Enrollment:
    """An active enrollment from `now`; its first SMS will carry the footer."""
    enrollment = Enrollment(patient_id=patient_id, campaign_id=campaign_id, status="active",
                            enrolled_at=now, footer_since=now)
    session.add(enrollment)
    session.flush()
    return enrollment


def set_consent(rt: Runtime, ref: str, channel: str, granted: bool, *, source: str, by: str,
                evidence: str | None = None) -> Patient:
    channel = inputs.choice(channel, CHANNELS, "--channel")

    def act(session, patient, now):
        _consent(session, patient, channel, granted, now, source, by, evidence)
        if granted and channel == "sms":
            _footer_owed_again(session, patient.id, now)
        return patient

    return rt.change(ref, by, act)


def _footer_owed_again(session: Session, patient_id: int, now: datetime) -> None:
    # After START the next SMS carries the footer again (SPEC 3.2).
    session.execute(sa.update(Enrollment).where(Enrollment.patient_id == patient_id).values(footer_since=now))


def enroll(rt: Runtime, ref: str, campaign_id: str, session_times: list[str], *, by: str,
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


def _campaign(rt: Runtime, campaign_id: str) -> Campaign:
    if campaign_id not in rt.campaigns:
        known = ", ".join(sorted(rt.campaigns)) or "none"
        raise BadInput(f"campaign {campaign_id!r} not found in config/campaigns (known: {known})")
    return rt.campaigns[campaign_id]


def add_session(rt: Runtime, ref: str, at: str, *, by: str, campaign_id: str | None = None,
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
    row = _get(session, TreatmentSession, session_id, "session")
    return row, session.get(Enrollment, row.enrollment_id).patient_id


def change_session(rt: Runtime, session_id: str, *, by: str, action: str | None = None,
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


def change_enrollment(rt: Runtime, enrollment_id: str, action: str, *, by: str) -> Enrollment:
    with transaction(rt.engine) as session:
        enrollment = _get(session, Enrollment, enrollment_id, "enrollment")
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


def replan(rt: Runtime, *, by: str | None, enrollment_id: str | None = None) -> Changes:
    """Plan again one enrollment's patient, or every patient with an enrollment."""
    total = Changes()
    with transaction(rt.engine) as session:
        if enrollment_id is not None:
            patient_ids = [_get(session, Enrollment, enrollment_id, "enrollment").patient_id]
        else:
            patient_ids = session.execute(sa.select(Enrollment.patient_id).distinct()).scalars().all()
        for patient_id in patient_ids:
            total.counts.update(rt.replan(session, session.get(Patient, patient_id), by).counts)
    return total


def cancel_message(rt: Runtime, message_id: str, *, by: str) -> Message:
    """Staff cancel one pending message; planning leaves it cancelled."""
    with transaction(rt.engine) as session:
        row = _get(session, Message, message_id, "message")
        if not outbox.transition(session, row.id, PENDING,
                                 "cancelled", rt.clock.now(), "cancelled", reason="staff", by=by,
                                 next_attempt_at=None):
            raise BadInput(f"message {row.id} is {row.status}; only a scheduled or skipped message can be cancelled")
        session.refresh(row)
        return row


def retry_message(rt: Runtime, message_id: str, *, by: str) -> Message:
    """Staff retry a failed (or staff-cancelled) message: scheduled now, if it has not expired."""
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        row = _get(session, Message, message_id, "message")
        if not (row.status == "failed" or (row.status == "cancelled" and row.reason == "staff")):
            raise BadInput(f"message {row.id} is {row.status}{f' ({row.reason})' if row.reason else ''}; only a failed "
                           f"message, or one staff cancelled by hand, can be retried")
        if row.expires_at <= now:
            raise BadInput(f"message {row.id} expired at {row.expires_at.isoformat()}; it can no longer be sent")
        outbox.transition(session, row.id, ("failed", "cancelled"), "scheduled", now, "retry", by=by,
                          due_at=max(row.due_at, now), next_attempt_at=None, attempts=0, error=None)
        session.refresh(row)
        return row


def current_consent(session: Session, patient: Patient) -> dict[str, bool]:
    return consent_in_force(session, patient)
