"""One patient's course as front-desk staff read it (SPEC 9 `timeline`): the sessions,
every message with a reason wherever one is needed (why it was not sent, why its time
moved), and why nothing is planned on a channel the campaign uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from dripcare.app.effects import channel_notes
from dripcare.app.patients import course_of, current_consent, document, find_patient
from dripcare.config.clinic import Clinic
from dripcare.domain.campaign import Step
from dripcare.domain.statuses import MessageStatus as S
from dripcare.domain.timing import apply_offset, zone
from dripcare.store import outbox
from dripcare.store.models import Message

# What each reason word (SPEC 6, closed list) means, for the legend under a timeline.
REASON_MEANS = {
    "rescheduled": "its session moved; the new date has its own messages",
    "session_cancelled": "its session was cancelled",
    "no_show": "its session was missed",
    "withdrawn": "the patient was withdrawn from the course",
    "paused": "the enrollment is paused",
    "opted_out": "no consent in force on that channel",
    "contact_invalid": "the phone number or email address is missing or cannot receive",
    "daily_cap": "over the clinic's limit of messages per patient per day",
    "no_send_window": "no time outside quiet hours before it would be too late",
    "quiet_hours": "its only time left fell inside quiet hours",
    "expired": "too late to send",
    "max_attempts": "the provider did not take it after 5 attempts",
    "template_error": "its template did not render; fix the template and it is tried again",
    "step_removed": "the step is no longer in the campaign file",
    "channel_paused": "the channel is paused for every worker (dripcare status)",
    "staff": "cancelled by hand",
    "quiet hours": "its own time fell inside quiet hours, so it goes just before or after them",
    "late": "its own time had passed when it was planned, so it goes as soon as it may",
}


@dataclass(frozen=True)
class TimelineRow:
    message: Message
    session_number: int | None  # the session's number in the list above the messages
    why: str | None


@dataclass(frozen=True)
class Timeline:
    patient: dict  # as `patient show --json`, without the course
    course: list[dict]  # enrollments, each with its numbered sessions
    rows: list[TimelineRow]
    notes: list[str]
    now: datetime


def timeline(rt, ref: str | int) -> Timeline:
    now = rt.clock.now()
    with Session(rt.engine) as session:
        patient = find_patient(session, ref)
        course = course_of(session, patient.id)
        messages = outbox.of_patient(session, patient.id)
        notes = channel_notes(rt, session, patient, messages, now)
        person = document(patient, current_consent(session, patient))
    numbers = {s["id"]: s["number"] for e in course for s in e["sessions"]}
    steps = {}
    for e in course:
        campaign = rt.campaigns.get(e["campaign"])
        steps.update({(e["id"], step.id): step for step in (campaign.steps if campaign else ())})
    rows = [TimelineRow(m, numbers.get(m.session_id), why(m, steps.get((m.enrollment_id, m.step_id)),
                                                           patient.timezone, rt.clinic))
            for m in messages]
    return Timeline(person, course, rows, notes, now)


def why(m: Message, step: Step | None, tz_name: str, clinic: Clinic) -> str | None:
    """The reason a row needs: its reason word, or why a planned time is not the step's own."""
    if m.status != S.SCHEDULED:
        return m.reason
    tz = zone(tz_name)
    if m.next_attempt_at is not None:
        held = f"{m.next_attempt_at.astimezone(tz):%H:%M}"
        if m.reason:
            return f"{m.reason}: held until {held}"
        return f"retry at {held} (attempt {m.attempts + 1})" if m.attempts else f"held until {held}"
    if m.reason:
        return m.reason
    if step is None:
        return None
    nominal = apply_offset(m.anchor_at, step.offset, tz, step.at)
    if m.due_at == nominal:
        return None
    local = nominal.astimezone(tz)
    quiet = clinic.quiet_hours
    if quiet.contains(nominal, tz):
        return f"quiet hours: was due {local:%H:%M}"
    if m.due_at > nominal:
        return f"late: was due {local:%a} {local.day} {local:%b} {local:%H:%M}"
    return None
