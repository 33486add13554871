"""The outbox: every read and write of the message table, in one place (SPEC 6, 7).

Each change of state is a named operation that knows the states it may start from. It
is one conditional UPDATE on those states, so a late or repeated update is a no-op,
never a corruption, and every change that happens writes one message_event. Nothing
else in dripcare writes a message's status.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dripcare.domain.statuses import CALLBACK_FROM, IN_DOUBT, PENDING, MessageStatus as S
from dripcare.store.bulk import insert_with_ids
from dripcare.store.models import Enrollment, Message, MessageEvent, Patient

LEASE = timedelta(minutes=5)
UNCONFIRMED_AFTER = timedelta(minutes=2)  # an ambiguous send is looked up after this long
message = Message.__table__
event = MessageEvent.__table__


def record_event(session: Session, message_id: int, at: datetime, kind: str, status: str,
                 reason: str | None = None, detail: str | None = None, by: str | None = None) -> None:
    session.execute(sa.insert(event).values(message_id=message_id, at=at, kind=kind, status=status,
                                            reason=reason, detail=detail, by=by))


def _move(session: Session, message_id: int, expected: Iterable[str], status: str, at: datetime,
          kind: str, *, reason: str | None = None, detail: str | None = None,
          by: str | None = None, **values) -> bool:
    """Move one row from one of `expected` to `status`; False when another writer got there first."""
    result = session.execute(
        sa.update(message)
        .where(message.c.id == message_id, message.c.status.in_(tuple(expected)))
        .values(status=status, reason=reason, updated_at=at, **values))
    if result.rowcount != 1:
        return False
    record_event(session, message_id, at, kind, status, reason, detail, by)
    return True


# --- planning (reconcile is the only caller) ------------------------------------------------

def insert_planned(session: Session, at: datetime, by: str | None, rows: list[dict]) -> list[int]:
    """New rows from planning, each with its `planned` (or `skipped`) event, in bulk: an
    enrollment plans dozens of rows at once, an import thousands."""
    if not rows:
        return []
    ids = insert_with_ids(session, message, [dict(updated_at=at, **row) for row in rows])
    session.execute(sa.insert(event), [
        dict(message_id=i, at=at, kind="planned" if row["status"] == S.SCHEDULED else "skipped",
             status=row["status"], reason=row.get("reason"), detail=None, by=by) for i, row in zip(ids, rows)])
    return ids


def cancel_planned(session: Session, message_id: int, at: datetime, reason: str, by: str | None) -> bool:
    """Planning no longer wants a pending row."""
    return _move(session, message_id, PENDING, S.CANCELLED, at, "cancelled", reason=reason, by=by,
                 next_attempt_at=None)


def recancel(session: Session, message_id: int, at: datetime, reason: str, by: str | None) -> bool:
    """A cancelled row planning owns, cancelled now for another reason (paused, then opted out)."""
    return _move(session, message_id, (S.CANCELLED,), S.CANCELLED, at, "cancelled", reason=reason, by=by)


def replan_row(session: Session, message_id: int, current: str, status: str, reason: str | None,
               due_at: datetime, expires_at: datetime, priority: int, at: datetime, by: str | None) -> str | None:
    """Move, skip or reopen a row planning still owns; the event kind, or None if it changed meanwhile."""
    kind = "skipped" if status == S.SKIPPED else "moved" if current == S.SCHEDULED else "reopened"
    moved = _move(session, message_id, (current,), status, at, kind, reason=reason, by=by,
                  next_attempt_at=None, due_at=due_at, expires_at=expires_at, priority=priority)
    return kind if moved else None


# --- staff, by hand --------------------------------------------------------------------------

def cancel_by_staff(session: Session, message_id: int, at: datetime, by: str) -> bool:
    return _move(session, message_id, PENDING, S.CANCELLED, at, "cancelled", reason="staff", by=by,
                 next_attempt_at=None)


def retry_by_staff(session: Session, message_id: int, due_at: datetime, at: datetime, by: str) -> bool:
    """A failed (or staff-cancelled) row scheduled again, its attempts counted afresh."""
    return _move(session, message_id, (S.FAILED, S.CANCELLED), S.SCHEDULED, at, "retry", by=by,
                 due_at=due_at, next_attempt_at=None, attempts=0, error=None)


# --- claiming ---------------------------------------------------------------------------------

def claim_due(engine: Engine, now: datetime, limit: int, worker_id: str, channels: Iterable[str]) -> list[int]:
    """Claim up to `limit` due rows in one atomic statement: `sending` with a 5-minute
    lease. On PostgreSQL, SKIP LOCKED lets any number of workers share the outbox."""
    due = (sa.select(message.c.id)
           .where(message.c.status == S.SCHEDULED, message.c.due_at <= now,
                  message.c.channel.in_(tuple(channels)),
                  sa.or_(message.c.next_attempt_at.is_(None), message.c.next_attempt_at <= now))
           .order_by(message.c.due_at, message.c.id).limit(limit))
    if engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    with Session(engine) as session, session.begin():
        # The subquery is the expected-state condition: SQLite runs it under the write lock
        # (BEGIN IMMEDIATE), PostgreSQL re-checks it on each row it locks. Repeating the
        # status test outside would make SQLite walk every pending row of the status index.
        ids = session.execute(
            sa.update(message).where(message.c.id.in_(due.scalar_subquery()))
            .values(status=S.SENDING, lease_until=now + LEASE, claimed_by=worker_id,
                    ever_claimed=True, updated_at=now)
            .returning(message.c.id)).scalars().all()
        if ids:
            session.execute(sa.insert(event), [dict(message_id=i, at=now, kind="claimed", status=S.SENDING,
                                                    detail=worker_id) for i in ids])
    return sorted(ids)


# --- sending: the dispatcher's moves, each from `sending` ---------------------------------------

@dataclass(frozen=True)
class Attempt:
    """What is stored on the row before the provider is called (SPEC 4)."""

    message_id: int
    to: str
    body: str
    subject: str | None
    html: str | None
    footer: bool


def _still_sending(session: Session, ids: list[int]) -> set[int]:
    """Which of `ids` are still `sending`: a lease sweep may have put one back meanwhile."""
    return set(session.execute(sa.select(message.c.id).where(
        message.c.id.in_(ids), message.c.status == S.SENDING)).scalars())


def start_attempts(session: Session, attempts: list[Attempt], at: datetime) -> set[int]:
    """The exact text of each attempt stored before the provider is called, in one
    statement for a group; the ids whose row was still this worker's to send."""
    if not attempts:
        return set()
    ids = [a.message_id for a in attempts]
    still = _still_sending(session, ids)
    rows = [dict(b_id=a.message_id, b_to=a.to, b_body=a.body, b_subject=a.subject, b_html=a.html,
                 b_footer=a.footer) for a in attempts if a.message_id in still]
    if rows:
        session.execute(sa.update(message).where(message.c.id == sa.bindparam("b_id"))
                        .values(attempts=message.c.attempts + 1, error=None, to_contact=sa.bindparam("b_to"),
                                body=sa.bindparam("b_body"), subject=sa.bindparam("b_subject"),
                                html=sa.bindparam("b_html"), footer=sa.bindparam("b_footer"),
                                attempted_at=at, updated_at=at), rows)
        session.execute(sa.insert(event), [dict(message_id=r["b_id"], at=at, kind="attempt", status=S.SENDING)
                                           for r in rows])
    return {r["b_id"] for r in rows}


def mark_sent(session: Session, sends: list[tuple[int, str, datetime]]) -> int:
    """Accepted by the provider: (message id, provider id, when), written together."""
    if not sends:
        return 0
    ids = [i for i, _, _ in sends]
    still = _still_sending(session, ids)
    rows = [dict(b_id=i, b_provider=p, b_at=at) for i, p, at in sends if i in still]
    if rows:
        session.execute(sa.update(message).where(message.c.id == sa.bindparam("b_id"))
                        .values(status=S.SENT, reason=None, lease_until=None, provider_id=sa.bindparam("b_provider"),
                                sent_at=sa.bindparam("b_at"), updated_at=sa.bindparam("b_at")), rows)
        session.execute(sa.insert(event), [dict(message_id=r["b_id"], at=r["b_at"], kind="sent", status=S.SENT,
                                                detail=r["b_provider"]) for r in rows])
    return len(rows)


def close(session: Session, message_id: int, status: str, reason: str | None, at: datetime, *,
          detail: str | None = None, from_: Iterable[str] = (S.SENDING,), **values) -> bool:
    """Closed without a send: expired, cancelled, skipped (or failed by the provider's answer)."""
    return _move(session, message_id, from_, status, at, str(status), reason=reason, detail=detail,
                 lease_until=None, **values)


def fail(session: Session, message_id: int, code: str, at: datetime, reason: str | None = None) -> bool:
    """The provider refused for good (the reason is its code), or attempts ran out."""
    return close(session, message_id, S.FAILED, reason or code, at, detail=code, error=code)


@dataclass(frozen=True)
class KeptBack:
    """The check at the moment of sending held a message back (SPEC 7): closed without a
    send (`until` None: expired, cancelled, skipped), or back to the queue until `until`
    (deferred by quiet hours or the daily cap; with an `error`, a template to retry)."""

    message_id: int
    status: str
    reason: str
    at: datetime
    until: datetime | None = None
    detail: str | None = None
    error: str | None = None

    @property
    def kind(self) -> str:
        if self.until is None:
            return str(self.status)
        return "retry" if self.error is not None else "deferred"


def keep_back(session: Session, verdicts: list[KeptBack]) -> int:
    """A group's held-back messages written together: one UPDATE per kind of change and
    one insert of their events (a batch of sends often holds back most of its rows, at the
    daily cap, in quiet hours); only rows still this worker's to send."""
    if not verdicts:
        return 0
    still = _still_sending(session, [v.message_id for v in verdicts])
    chosen = [v for v in verdicts if v.message_id in still]
    row = message.c.id == sa.bindparam("b_id")
    common = dict(reason=sa.bindparam("b_reason"), updated_at=sa.bindparam("b_at"), lease_until=None)
    shapes = {  # what each kind of change writes besides the state
        "closed": dict(status=sa.bindparam("b_status"), **common),
        "deferred": dict(status=S.SCHEDULED, next_attempt_at=sa.bindparam("b_until"), **common),
        "retry": dict(status=S.SCHEDULED, next_attempt_at=sa.bindparam("b_until"), error=sa.bindparam("b_error"),
                      **common)}
    for shape, values in shapes.items():
        rows = [dict(b_id=v.message_id, b_status=v.status, b_reason=v.reason, b_at=v.at, b_until=v.until,
                     b_error=v.error) for v in chosen if (v.kind if v.until is not None else "closed") == shape]
        if rows:
            session.execute(sa.update(message).where(row, message.c.status == S.SENDING).values(**values), rows)
    if chosen:
        session.execute(sa.insert(event), [
            dict(message_id=v.message_id, at=v.at, kind=v.kind, status=v.status, reason=v.reason, by=None,
                 detail=v.until.isoformat() if v.kind == "deferred" else v.error if v.kind == "retry" else v.detail)
            for v in chosen])
    return len(chosen)


def retry_later(session: Session, message_id: int, when: datetime, at: datetime, *, code: str,
                reason: str | None = None) -> bool:
    """A retryable answer or a template error: another attempt at `when`."""
    return _move(session, message_id, (S.SENDING,), S.SCHEDULED, at, "retry", reason=reason,
                 detail=code[:300], error=code[:300], next_attempt_at=when, lease_until=None)


def mark_unconfirmed(session: Session, message_id: int, code: str, at: datetime) -> bool:
    """The request left and no answer came: looked up before any resend (SPEC 7)."""
    return _move(session, message_id, (S.SENDING,), S.UNCONFIRMED, at, "unconfirmed", detail=code,
                 error=code, lease_until=None)


def release(session: Session, message_ids: Iterable[int], at: datetime, worker_id: str, *,
            undo_attempt: bool = False) -> int:
    """Claimed rows put back untouched: nothing was sent for them (shutdown, a paused
    channel, a send slot missed). `undo_attempt` forgets a stored attempt that never left."""
    ids = list(message_ids)
    if not ids:
        return 0
    undo = dict(attempted_at=None, attempts=message.c.attempts - 1) if undo_attempt else {}
    released = session.execute(
        sa.update(message).where(message.c.id.in_(ids), message.c.status == S.SENDING)
        .values(status=S.SCHEDULED, reason=None, updated_at=at, lease_until=None, claimed_by=None, **undo)
        .returning(message.c.id)).scalars().all()
    if released:
        session.execute(sa.insert(event), [dict(message_id=i, at=at, kind="released", status=S.SCHEDULED,
                                                detail=worker_id) for i in released])
    return len(released)


def release_unattempted(session: Session, worker_id: str, at: datetime) -> int:
    """At shutdown: rows this worker claimed but never handed to a provider go back."""
    ids = session.execute(sa.select(message.c.id).where(
        message.c.status == S.SENDING, message.c.claimed_by == worker_id, message.c.attempted_at.is_(None))
    ).scalars().all()
    return release(session, ids, at, worker_id)


# --- rows in doubt ------------------------------------------------------------------------------

def needing_resolution(session: Session, now: datetime) -> list[Message]:
    """`unconfirmed` rows whose attempt is over 2 minutes old, and `sending` rows whose
    lease ran out (their worker died): both are resolved before anything new is claimed."""
    return list(session.exec(
        sa.select(Message).where(sa.or_(
            sa.and_(Message.status == S.UNCONFIRMED, Message.attempted_at <= now - UNCONFIRMED_AFTER),
            sa.and_(Message.status == S.SENDING, Message.lease_until <= now))).order_by(Message.id)
    ).scalars())


def confirm(session: Session, message_id: int, provider_id: str, at: datetime, *, detail: str,
            by: str | None = None) -> bool:
    """A send in doubt that the provider says it took: `sent`, so it is never sent twice."""
    return _move(session, message_id, IN_DOUBT, S.SENT, at, "sent", detail=detail, by=by,
                 provider_id=provider_id, sent_at=at, lease_until=None)


def recover(session: Session, message_id: int, current: str, at: datetime) -> bool:
    """Not found at the provider after the grace: another attempt."""
    return _move(session, message_id, (current,), S.SCHEDULED, at, "recovered", lease_until=None,
                 claimed_by=None, next_attempt_at=None)


# --- answers after sending (status callbacks) --------------------------------------------------

def settle(session: Session, m: Message, status: str, code: str | None, sid: str | None, at: datetime) -> bool:
    """delivered / undelivered / failed from a status callback; never backwards from a final state."""
    failed = status != S.DELIVERED
    answer = f"twilio:{code}" if code else None
    values = {"provider_id": m.provider_id or sid, "sent_at": m.sent_at or at, "lease_until": None}
    if failed:
        values["error"] = answer
    return _move(session, m.id, CALLBACK_FROM, status, at, str(status), reason=answer if failed else None,
                 detail=answer, by="twilio", **values)


# --- what the faces and the clock need to know ---------------------------------------------------

def of_patient(session: Session, patient_id: int) -> list[Message]:
    """One patient's messages, planned and past, in the order they go out."""
    return session.execute(sa.select(Message).where(Message.patient_id == patient_id)
                           .order_by(Message.due_at, Message.id)).scalars().all()


def find(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def by_provider_id(session: Session, provider_id: str) -> Message | None:
    return session.execute(sa.select(Message).where(Message.provider_id == provider_id)).scalars().first()


@dataclass(frozen=True)
class OutboxFilter:
    statuses: tuple[str, ...] = ()
    patient_id: int | None = None
    campaign: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query, f: OutboxFilter):
    if f.statuses:
        query = query.where(Message.status.in_(f.statuses))
    if f.patient_id is not None:
        query = query.where(Message.patient_id == f.patient_id)
    if f.campaign is not None:
        query = query.where(Message.enrollment_id.in_(
            sa.select(Enrollment.id).where(Enrollment.campaign_id == f.campaign)))
    if f.since is not None:
        query = query.where(Message.due_at >= f.since)
    if f.until is not None:
        query = query.where(Message.due_at < f.until)
    return query


def listing(session: Session, f: OutboxFilter, limit: int | None = None) -> Iterator[tuple[Message, str]]:
    """Messages of every patient (with the patient's zone), oldest due first, streamed in
    chunks so a 100k-row outbox is never held in memory at once."""
    query = _filtered(sa.select(Message, Patient.timezone).join(Patient, Message.patient_id == Patient.id), f)
    query = query.order_by(Message.due_at, Message.id)
    if limit is not None:
        query = query.limit(limit)
    result = session.execute(query.execution_options(yield_per=1000))
    for m, tz in result:
        yield m, tz


def count(session: Session, f: OutboxFilter) -> int:
    return session.execute(_filtered(sa.select(sa.func.count()).select_from(Message), f)).scalar()


def next_moment(session: Session, now: datetime, grace: timedelta) -> datetime | None:
    """The next instant the dispatcher has something to do: a due row, a lease running
    out, or an unconfirmed row's grace ending (a virtual clock jumps straight there)."""
    due = session.execute(sa.select(sa.func.min(sa.func.coalesce(Message.next_attempt_at, Message.due_at)))
                          .where(Message.status == S.SCHEDULED)).scalar()
    lease = session.execute(sa.select(sa.func.min(Message.lease_until)).where(Message.status == S.SENDING)).scalar()
    attempt = session.execute(sa.select(sa.func.min(Message.attempted_at))
                              .where(Message.status == S.UNCONFIRMED)).scalar()
    moments = [m for m in (due, lease, attempt and max(attempt + grace, now + timedelta(minutes=1)))
               if m is not None]
    return min(moments) if moments else None


def step_outcomes(session: Session) -> list[tuple[str, str, str | None, int]]:
    """(step, status, reason, count) over every message: a course's outcome at a glance."""
    return session.execute(sa.select(Message.step_id, Message.status, Message.reason, sa.func.count())
                           .group_by(Message.step_id, Message.status, Message.reason)
                           .order_by(Message.step_id)).all()


def recipients(session: Session) -> dict[int, tuple[str, str, str]]:
    """message id -> (the name a patient is called by, their zone, the step)."""
    rows = session.execute(sa.select(Message.id, sa.func.coalesce(Patient.preferred_name, Patient.first_name),
                                     Patient.timezone, Message.step_id)
                           .join(Patient, Message.patient_id == Patient.id)).all()
    return {m: (name, tz, step) for m, name, tz, step in rows}


# --- what a staff change did, and what comes next (the CLI's summaries) ---------------------------

@dataclass(frozen=True)
class RowBrief:
    """A message row as a change summary compares it, copied out of the session."""

    id: int
    enrollment_id: int
    channel: str
    step_id: str
    status: str
    reason: str | None
    due_at: datetime
    expires_at: datetime


def briefs_of_patient(session: Session, patient_id: int) -> dict[int, RowBrief]:
    """One patient's rows as plain values (read afresh: a summary compares before and after)."""
    rows = session.execute(sa.select(message.c.id, message.c.enrollment_id, message.c.channel, message.c.step_id,
                                     message.c.status, message.c.reason, message.c.due_at,
                                     message.c.expires_at)
                           .where(message.c.patient_id == patient_id)).all()
    return {r.id: RowBrief(*r) for r in rows}


def next_planned(session: Session, patient_id: int, now: datetime) -> Message | None:
    """The patient's next message to go out: the earliest scheduled row not yet expired (a
    retry at its retry time)."""
    when = sa.func.coalesce(Message.next_attempt_at, Message.due_at)
    return session.execute(sa.select(Message).where(Message.patient_id == patient_id,
                                                    Message.status == S.SCHEDULED, Message.expires_at > now)
                           .order_by(when, Message.id).limit(1)).scalars().first()



# --- what `dripcare status` counts ------------------------------------------------------------

def queue_state(session: Session, now: datetime, overdue_after: timedelta) -> dict:
    """Rows by status, how many are due now, and the oldest overdue one."""
    counts = dict(session.execute(sa.select(Message.status, sa.func.count()).group_by(Message.status)).all())
    due = sa.func.coalesce(Message.next_attempt_at, Message.due_at)
    due_now = session.execute(sa.select(sa.func.count()).select_from(Message).where(
        Message.status == S.SCHEDULED, due <= now)).scalar()
    oldest = session.execute(sa.select(Message.id, due).where(
        Message.status == S.SCHEDULED, due <= now - overdue_after).order_by(due).limit(1)).first()
    return {"by_status": counts, "due_now": due_now,
            "oldest_overdue": None if oldest is None else {
                "id": oldest[0], "due_at": oldest[1], "minutes": int((now - oldest[1]).total_seconds() // 60)}}


def failures_by_reason(session: Session) -> dict[str, int]:
    rows = session.execute(sa.select(Message.reason, sa.func.count()).where(
        Message.status.in_((S.FAILED, S.UNDELIVERED, S.EXPIRED))).group_by(Message.reason)).all()
    return {reason or "unknown": n for reason, n in rows}


def carrier_filtered(session: Session) -> int:
    """Twilio 30007 answers: carriers filtering our texts, counted so someone looks."""
    return session.execute(sa.select(sa.func.count()).select_from(MessageEvent).where(
        MessageEvent.detail == "twilio:30007")).scalar()


def sent_by_channel(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    return dict(session.execute(sa.select(Message.channel, sa.func.count()).where(
        Message.sent_at > since, Message.sent_at <= until).group_by(Message.channel)).all())
