"""Pure planning (SPEC 6): the messages that should exist for one patient.

No database, no clock, no I/O: everything arrives as plain values, `now` included.
`plan_patient` says what should exist; `cancel_reason` says why a pending row that
should not exist any more is cancelled. `reconcile` turns both into row changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dripcare.domain.campaign import Campaign, Step
from dripcare.domain.eligibility import Standing, stop_reason
from dripcare.domain.statuses import ACTIVE_ENROLLMENT, COUNTED_SESSIONS, PENDING, PLANNING, WENT_OUT
from dripcare.domain.statuses import MessageStatus as S
from dripcare.domain.timing import QuietHours, apply_offset, local_day, send_time_from, send_window, zone

DEFAULT_EXPIRY = timedelta(hours=24)


@dataclass(frozen=True)
class SessionState:
    id: int
    starts_at: datetime
    status: str


@dataclass(frozen=True)
class EnrollmentState:
    id: int
    campaign: Campaign | None  # None when its campaign file is gone
    status: str
    enrolled_at: datetime
    completed: bool
    sessions: tuple[SessionState, ...]


@dataclass(frozen=True)
class PatientState:
    timezone: str
    # Per channel: has a usable contact (present, not flagged invalid) / consent in force.
    reachable: dict[str, bool]
    consented: dict[str, bool]


@dataclass(frozen=True)
class RowState:
    """What planning needs to know of an existing message row."""

    id: int
    key: str
    enrollment_id: int
    step_id: str
    channel: str
    session_id: int | None
    anchor_at: datetime
    status: str
    reason: str | None
    due_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    ever_claimed: bool

    @property
    def belongs_to_planning(self) -> bool:
        # Rule 10; a row staff cancelled by hand stays cancelled.
        return (not self.ever_claimed and self.status in PLANNING
                and not (self.status == S.CANCELLED and self.reason == "staff"))


@dataclass(frozen=True)
class Planned:
    key: str
    enrollment_id: int
    step_id: str
    channel: str
    session_id: int | None
    anchor_at: datetime
    due_at: datetime
    expires_at: datetime
    priority: int
    status: str  # scheduled | skipped
    reason: str | None


@dataclass(frozen=True)
class Rules:
    quiet_hours: QuietHours
    max_per_day: dict[str, int]


def plan_key(enrollment_id: int, step_id: str, session_id: int | None, channel: str, anchor_at: datetime) -> str:
    return f"{enrollment_id}:{step_id}:{session_id or '-'}:{channel}:{anchor_at.isoformat()}"


def step_anchors(step: Step, enrollment: EnrollmentState) -> list[tuple[SessionState | None, datetime]]:
    """Rule 1: the (session, instant) pairs a step hangs on."""
    if step.anchor == "enrollment":
        return [(None, enrollment.enrolled_at)]
    counted = sorted((s for s in enrollment.sessions if s.status in COUNTED_SESSIONS),
                     key=lambda s: (s.starts_at, s.id))
    if step.anchor == "first_session":
        counted = counted[:1]
    elif step.anchor == "last_session":
        waits = enrollment.campaign.course_end == "on_complete" and not enrollment.completed
        counted = [] if waits else counted[-1:]
    if step.when == "completed":
        counted = [s for s in counted if s.status == "completed"]
    return [(s, s.starts_at) for s in counted]


def expiry(step: Step, anchor_at: datetime, due: datetime) -> datetime:
    """Rule 3: session start for steps due before their session, else due + 24h."""
    if isinstance(step.expires, timedelta):
        return due + step.expires
    if step.expires == "session_start" or (step.session_anchored and due < anchor_at):
        return anchor_at
    return due + DEFAULT_EXPIRY


def usable_channels(step: Step, patient: PatientState) -> list[str]:
    """Rule 7: the step's channels the patient can be reached on and agreed to."""
    return [c for c in step.channels if patient.reachable.get(c) and patient.consented.get(c)]


def _plan_one(step: Step, enrollment: EnrollmentState, session: SessionState | None,
              anchor_at: datetime, channel: str, existing: RowState | None,
              patient: PatientState, rules: Rules, now: datetime) -> Planned:
    tz = zone(patient.timezone)
    due = apply_offset(anchor_at, step.offset, tz, step.at)
    expires = expiry(step, anchor_at, due)
    floor = None if step.offset.negative else anchor_at
    natural = send_window(due, expires, tz, rules.quiet_hours, floor)
    if existing is not None and existing.status in PENDING and (natural is None or natural < now):
        # Rule 5: planning never re-judges a pending row against now (a capped row keeps its
        # day, whenever the next replan happens); a cancelled one coming back is new again.
        had_window = natural is not None and existing.reason != "no_send_window"
        send_at = existing.due_at if had_window else None
    else:
        send_at = send_time_from(now, natural, expires, tz, rules.quiet_hours)
    session_id = session.id if session else None
    return Planned(
        key=plan_key(enrollment.id, step.id, session_id, channel, anchor_at),
        enrollment_id=enrollment.id, step_id=step.id, channel=channel, session_id=session_id,
        anchor_at=anchor_at, due_at=send_at or due, expires_at=expires, priority=step.priority,
        status=S.SCHEDULED if send_at else S.SKIPPED, reason=None if send_at else "no_send_window")


def _plan_enrollment(enrollment: EnrollmentState, rows: dict[str, RowState], done: set[tuple],
                     patient: PatientState, rules: Rules, now: datetime) -> list[Planned]:
    if enrollment.status not in ACTIVE_ENROLLMENT or enrollment.campaign is None:
        return []
    planned = []
    for step in enrollment.campaign.steps:
        for session, anchor_at in step_anchors(step, enrollment):
            for channel in usable_channels(step, patient):
                # Rule 8: a once-only step that went out is never planned again.
                if step.anchor != "each_session" and (enrollment.id, step.id, channel) in done:
                    continue
                key = plan_key(enrollment.id, step.id, session.id if session else None, channel, anchor_at)
                existing = rows.get(key)
                if existing is not None and not existing.belongs_to_planning:
                    continue
                planned.append(_plan_one(step, enrollment, session, anchor_at, channel,
                                         existing, patient, rules, now))
    return planned


def apply_daily_cap(planned: list[Planned], rows: list[RowState], tz_name: str,
                    max_per_day: dict[str, int]) -> list[Planned]:
    """Rule 6: per channel and local day, at most max_per_day, counting what went out;
    the rest, lowest priority first (then latest), are skipped."""
    tz = zone(tz_name)
    used: dict[tuple, int] = defaultdict(int)
    for row in rows:
        if row.status in WENT_OUT:
            used[(row.channel, local_day(row.sent_at or row.due_at, tz))] += 1
    result = [p for p in planned if p.status != S.SCHEDULED]
    for p in sorted((p for p in planned if p.status == S.SCHEDULED),
                    key=lambda p: (-p.priority, p.due_at, p.key)):
        day = (p.channel, local_day(p.due_at, tz))
        if used[day] < max_per_day.get(p.channel, 1):
            used[day] += 1
            result.append(p)
        else:
            result.append(replace(p, status=S.SKIPPED, reason="daily_cap"))
    return result


def plan_patient(patient: PatientState, enrollments: list[EnrollmentState], rows: list[RowState],
                 rules: Rules, now: datetime) -> dict[str, Planned]:
    """Every message that should exist for this patient, by plan key."""
    by_key = {r.key: r for r in rows}
    done = {(r.enrollment_id, r.step_id, r.channel) for r in rows if r.status in WENT_OUT}
    planned = [p for e in enrollments for p in _plan_enrollment(e, by_key, done, patient, rules, now)]
    capped = apply_daily_cap(planned, rows, patient.timezone, rules.max_per_day)
    return {p.key: p for p in capped}


def standing(step_id: str, session_id: int | None, anchor_at: datetime, channel: str,
             enrollment: EnrollmentState | None, patient: PatientState) -> Standing:
    """What decides whether one row may still go out, from the state planning reads."""
    step = enrollment.campaign.step(step_id) if enrollment and enrollment.campaign else None
    session = next((s for s in enrollment.sessions if s.id == session_id), None) if enrollment else None
    anchors = step_anchors(step, enrollment) if step is not None else []
    return Standing(
        enrollment_status=enrollment.status if enrollment else None, step_exists=step is not None,
        reachable=bool(patient.reachable.get(channel)), consented=bool(patient.consented.get(channel)),
        session_status=session.status if session else None,
        anchor_current=any((s.id if s else None, at) == (session_id, anchor_at) for s, at in anchors))


def cancel_reason(row: RowState, enrollment: EnrollmentState | None, patient: PatientState) -> str:
    """Why a pending row that planning no longer wants is cancelled (SPEC 6 reasons): the
    send-time check's judgement; a row that is merely not wanted any more was moved."""
    return stop_reason(standing(row.step_id, row.session_id, row.anchor_at, row.channel, enrollment, patient)) \
        or "rescheduled"
