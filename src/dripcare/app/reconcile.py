"""Desired messages vs rows -> inserts, moves, skips, reopens and cancels, in the
caller's transaction, each with its message_event (SPEC 6). The one writer of plans."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain.contacts import CHANNELS, reachable
from dripcare.domain.statuses import PENDING, MessageStatus as S
from dripcare.store import outbox
from dripcare.domain.campaign import Campaign
from dripcare.config.clinic import Clinic
from dripcare.store.bulk import in_slices
from dripcare.store.consent import in_force_for
from dripcare.store.models import Enrollment, Message, Patient, TreatmentSession
from dripcare.domain.planner import (EnrollmentState, PatientState, Planned, RowState, Rules, SessionState,
                      cancel_reason, plan_patient)


# Reasons that describe a state which may change again (and so are judged again); a row
# cancelled because its session moved, or by staff, keeps its reason.
STANDING_REASONS = ("withdrawn", "paused", "opted_out", "contact_invalid", "session_cancelled", "no_show")


@dataclass
class Changes:
    counts: Counter = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(+self.counts)


def rules_of(clinic: Clinic) -> Rules:
    return Rules(quiet_hours=clinic.quiet_hours, max_per_day=clinic.max_per_day)


def patient_state(patient: Patient, consented: dict[str, bool]) -> PatientState:
    return PatientState(timezone=patient.timezone, reachable={c: reachable(patient, c) for c in CHANNELS},
                        consented=consented)


def enrollment_states(session: Session, patient_ids: list[int],
                      campaigns: dict[str, Campaign]) -> dict[int, list[EnrollmentState]]:
    """Every enrollment of these patients, with its sessions, by patient: two statements a slice."""
    found: dict[int, list[EnrollmentState]] = defaultdict(list)
    for part in in_slices(patient_ids):
        enrollments = session.execute(sa.select(Enrollment.__table__).where(Enrollment.patient_id.in_(part))
                                      .order_by(Enrollment.id)).all()
        sessions: dict[int, list[SessionState]] = defaultdict(list)
        for s in session.execute(sa.select(TreatmentSession.id, TreatmentSession.enrollment_id,
                                           TreatmentSession.starts_at, TreatmentSession.status)
                                 .where(TreatmentSession.enrollment_id.in_([e.id for e in enrollments]))):
            sessions[s.enrollment_id].append(SessionState(s.id, s.starts_at, s.status))
        for e in enrollments:
            found[e.patient_id].append(EnrollmentState(
                id=e.id, campaign=campaigns.get(e.campaign_id), status=e.status, enrolled_at=e.enrolled_at,
                completed=e.completed_at is not None, sessions=tuple(sessions[e.id])))
    return found


_ROW_COLUMNS = (Message.id, Message.plan_key, Message.patient_id, Message.enrollment_id, Message.step_id,
                Message.channel, Message.session_id, Message.anchor_at, Message.status, Message.reason,
                Message.due_at, Message.expires_at, Message.sent_at, Message.ever_claimed)


def row_states(session: Session, patient_ids: list[int]) -> dict[int, list[RowState]]:
    found: dict[int, list[RowState]] = defaultdict(list)
    for part in in_slices(patient_ids):
        for m in session.execute(sa.select(*_ROW_COLUMNS).where(Message.patient_id.in_(part))):
            found[m.patient_id].append(RowState(
                id=m.id, key=m.plan_key, enrollment_id=m.enrollment_id, step_id=m.step_id, channel=m.channel,
                session_id=m.session_id, anchor_at=m.anchor_at, status=m.status, reason=m.reason, due_at=m.due_at,
                expires_at=m.expires_at, sent_at=m.sent_at, ever_claimed=m.ever_claimed))
    return found


def reconcile_patient(session: Session, patient: Patient, clinic: Clinic, campaigns: dict[str, Campaign],
                      now: datetime, by: str | None = None) -> Changes:
    """Bring one patient's outbox in line with the plan. Running it twice changes nothing."""
    return reconcile_patients(session, [patient], clinic, campaigns, now, by)


def reconcile_patients(session: Session, patients: list[Patient], clinic: Clinic, campaigns: dict[str, Campaign],
                       now: datetime, by: str | None = None) -> Changes:
    """Bring these patients' outboxes in line with the plan: one read of their state, the
    pure planner over each, new rows written together (an import plans thousands at once)."""
    ids = [p.id for p in patients]
    # Two processes replanning one patient at once (a STOP arriving while staff reschedule)
    # take turns on PostgreSQL; SQLite's write lock already serialises them.
    for part in in_slices(sorted(ids)):
        session.execute(sa.select(Patient.id).where(Patient.id.in_(part)).order_by(Patient.id).with_for_update())
    consented = in_force_for(session, patients)
    enrollments, rows = enrollment_states(session, ids, campaigns), row_states(session, ids)
    changes, new_rows, rules = Changes(), [], rules_of(clinic)
    for patient in patients:
        state = patient_state(patient, consented[patient.id])
        new_rows += _reconcile_one(session, patient.id, state, enrollments[patient.id], rows[patient.id],
                                   rules, now, by, changes)
    outbox.insert_planned(session, now, by, new_rows)
    changes.counts.update(("planned" if r["status"] == S.SCHEDULED else "skipped") for r in new_rows)
    return changes


def _reconcile_one(session: Session, patient_id: int, state: PatientState, enrollments: list[EnrollmentState],
                   rows: list[RowState], rules: Rules, now: datetime, by: str | None, changes: Changes) -> list[dict]:
    """One patient's cancels and moves, written now; the rows to insert, returned."""
    desired = plan_patient(state, enrollments, rows, rules, now)
    by_enrollment = {e.id: e for e in enrollments}
    for row in rows:
        if row.key in desired or not row.belongs_to_planning:
            continue
        enrollment = by_enrollment.get(row.enrollment_id)
        reason = cancel_reason(row, enrollment, state)
        if reason == "step_removed" and enrollment is not None and enrollment.campaign is None:
            continue  # its campaign file is missing: a vanished file cancels nothing (SPEC 3.3)
        if row.status in PENDING:
            if outbox.cancel_planned(session, row.id, now, reason, by):
                changes.counts["cancelled"] += 1
        elif row.reason in STANDING_REASONS and reason in STANDING_REASONS and reason != row.reason:
            # Still cancelled, for what holds now: the same reason the send-time check gives.
            outbox.recancel(session, row.id, now, reason, by)
    existing = {r.key: r for r in rows}
    for planned in desired.values():
        if planned.key in existing:
            _apply(session, planned, existing[planned.key], now, by, changes)
    return [_new_row(p, patient_id) for p in desired.values() if p.key not in existing]


def _new_row(planned: Planned, patient_id: int) -> dict:
    return dict(plan_key=planned.key, patient_id=patient_id, enrollment_id=planned.enrollment_id,
                session_id=planned.session_id, step_id=planned.step_id, channel=planned.channel,
                anchor_at=planned.anchor_at, status=planned.status, reason=planned.reason,
                due_at=planned.due_at, expires_at=planned.expires_at, priority=planned.priority)


def _apply(session: Session, planned: Planned, row: RowState, now: datetime, by: str | None,
           changes: Changes) -> None:
    """Move, skip or reopen an existing row that planning still owns, when it differs."""
    if ((row.status, row.reason, row.due_at, row.expires_at)
            == (planned.status, planned.reason, planned.due_at, planned.expires_at)):
        return
    kind = outbox.replan_row(session, row.id, row.status, planned.status, planned.reason, planned.due_at,
                             planned.expires_at, planned.priority, now, by)
    if kind:
        changes.counts[kind] += 1
