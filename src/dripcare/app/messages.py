"""Messages as staff see and touch them (SPEC 9): cancel or retry one by hand, plan
again, and the outbox of every patient, filtered and streamed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlmodel import Session

from dripcare.app.patients import find_patient, get_record
from dripcare.app.reconcile import Changes
from dripcare.domain import inputs
from dripcare.domain.inputs import BadInput
from dripcare.domain.statuses import MessageStatus as S
from dripcare.domain.statuses import ALL
from dripcare.domain.timing import resolve_wall, zone
from dripcare.store import outbox
from dripcare.store import patients as patient_rows
from dripcare.store.db import transaction
from dripcare.store.models import Enrollment, Message
from dripcare.store.outbox import OutboxFilter

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


REPLAN_SLICE = 200  # patients planned again per transaction: the web's STOP never waits long


def replan(rt, *, by: str | None, enrollment_id: str | None = None, progress=None) -> Changes:
    """Plan again one enrollment's patient, or every patient with an enrollment, a slice
    of patients per transaction (planning is idempotent: a slice done stays done)."""
    with Session(rt.engine) as session:
        if enrollment_id is not None:
            patient_ids = [get_record(session, Enrollment, enrollment_id, "enrollment",
                                      "`dripcare patient show PATIENT`").patient_id]
        else:
            patient_ids = patient_rows.enrolled_patient_ids(session)
    total = Changes()
    for start in range(0, len(patient_ids), REPLAN_SLICE):
        with transaction(rt.engine) as session:
            part = patient_ids[start:start + REPLAN_SLICE]
            total.counts.update(rt.replan_many(session, patient_rows.patients_by_id(session, part), by).counts)
        if progress:
            progress("planning again", min(start + REPLAN_SLICE, len(patient_ids)), len(patient_ids))
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
        if not (row.status == S.FAILED or (row.status == S.CANCELLED and row.reason == "staff")):
            raise BadInput(f"message {row.id} is {row.status}{f' ({row.reason})' if row.reason else ''}; only a failed "
                           f"message, or one staff cancelled by hand, can be retried")
        if row.expires_at <= now:
            raise BadInput(f"message {row.id} expired at {row.expires_at.isoformat()}; it can no longer be sent")
        outbox.retry_by_staff(session, row.id, max(row.due_at, now), now, by)
        session.refresh(row)
        return row


def timeline(rt, ref: str | int):
    """One patient and their messages, planned and past, in the order they go out."""
    with Session(rt.engine) as session:
        patient = find_patient(session, ref)
        return patient, outbox.of_patient(session, patient.id)


def step_outcomes(rt) -> list[tuple[str, str, str | None, int]]:
    with Session(rt.engine) as session:
        return outbox.step_outcomes(session)


def recipients(rt) -> dict[int, tuple[str, str, str]]:
    with Session(rt.engine) as session:
        return outbox.recipients(session)


# --- the outbox of every patient ----------------------------------------------------------------

def outbox_filter(rt, *, statuses: list[str] = (), patient: str | None = None, campaign: str | None = None,
                  since: str | None = None, until: str | None = None) -> OutboxFilter:
    """What staff typed, checked: states, a patient, a campaign, a date range (clinic's zone)."""
    chosen = tuple(dict.fromkeys(inputs.choice(s, ALL, "--status") for s in statuses))
    patient_id = None
    if patient is not None:
        with Session(rt.engine) as session:
            patient_id = find_patient(session, patient).id
    if campaign is not None and campaign not in rt.campaigns:
        raise BadInput(f"--campaign {campaign!r} is not a campaign in config/campaigns "
                       f"(known: {', '.join(sorted(rt.campaigns)) or 'none'})")
    start = _moment(since, rt.clinic.timezone, "--since", end=False)
    end = _moment(until, rt.clinic.timezone, "--until", end=True)
    if start is not None and end is not None and end <= start:
        raise BadInput(f"--until {until!r} is not after --since {since!r}")
    return OutboxFilter(statuses=chosen, patient_id=patient_id, campaign=campaign, since=start, until=end)


def _moment(text: str | None, tz_name: str, what: str, *, end: bool) -> datetime | None:
    """A date (the whole day, in the clinic's zone) or a date and time."""
    if text is None:
        return None
    if _DATE.match(text.strip()):
        try:
            day = datetime.fromisoformat(text.strip())
        except ValueError:
            raise BadInput(f"{what} {text!r} is not a date like 2027-03-01") from None
        return resolve_wall(day + timedelta(days=1 if end else 0), zone(tz_name))
    return inputs.local_datetime(text, tz_name, what)


def outbox_rows(rt, f: OutboxFilter, limit: int | None = None) -> Iterator[tuple[Message, str]]:
    """(message, the patient's zone), oldest due first, read in chunks: a 100k-row outbox
    is never held in memory at once."""
    with Session(rt.engine) as session:
        yield from outbox.listing(session, f, limit)


def outbox_count(rt, f: OutboxFilter) -> int:
    with Session(rt.engine) as session:
        return outbox.count(session, f)
