"""Messages by hand (SPEC 9): staff cancel or retry one message, or plan again."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app.patients import get_record
from dripcare.app.reconcile import Changes
from dripcare.domain.inputs import BadInput
from dripcare.store import outbox
from dripcare.store.db import transaction
from dripcare.store.models import Enrollment, Message, Patient


def replan(rt, *, by: str | None, enrollment_id: str | None = None) -> Changes:
    """Plan again one enrollment's patient, or every patient with an enrollment."""
    total = Changes()
    with transaction(rt.engine) as session:
        if enrollment_id is not None:
            patient_ids = [get_record(session, Enrollment, enrollment_id, "enrollment", "`dripcare patient show PATIENT`").patient_id]
        else:
            patient_ids = session.execute(sa.select(Enrollment.patient_id).distinct()).scalars().all()
        for patient_id in patient_ids:
            total.counts.update(rt.replan(session, session.get(Patient, patient_id), by).counts)
    return total


def cancel_message(rt, message_id: str, *, by: str) -> Message:
    """Staff cancel one pending message; planning leaves it cancelled."""
    with transaction(rt.engine) as session:
        row = get_record(session, Message, message_id, "message", "`dripcare timeline PATIENT`")
        if not outbox.cancel_by_staff(session, row.id, rt.clock.now(), by):
            raise BadInput(f"message {row.id} is {row.status}; only a scheduled or skipped message can be cancelled")
        session.refresh(row)
        return row


def retry_message(rt, message_id: str, *, by: str) -> Message:
    """Staff retry a failed (or staff-cancelled) message: scheduled now, if it has not expired."""
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        row = get_record(session, Message, message_id, "message", "`dripcare timeline PATIENT`")
        if not (row.status == "failed" or (row.status == "cancelled" and row.reason == "staff")):
            raise BadInput(f"message {row.id} is {row.status}{f' ({row.reason})' if row.reason else ''}; only a failed "
                           f"message, or one staff cancelled by hand, can be retried")
        if row.expires_at <= now:
            raise BadInput(f"message {row.id} expired at {row.expires_at.isoformat()}; it can no longer be sent")
        outbox.retry_by_staff(session, row.id, max(row.due_at, now), now, by)
        session.refresh(row)
        return row


def timeline(rt, ref: str | int):
    """One patient and their messages, planned and past, in the order they go out."""
    from dripcare.app.patients import find_patient

    with Session(rt.engine) as session:
        patient = find_patient(session, ref)
        return patient, outbox.of_patient(session, patient.id)


def step_outcomes(rt) -> list[tuple[str, str, str | None, int]]:
    with Session(rt.engine) as session:
        return outbox.step_outcomes(session)


def recipients(rt) -> dict[int, tuple[str, str, str]]:
    with Session(rt.engine) as session:
        return outbox.recipients(session)
