"""The outbox's SQL, in one place (SPEC 7). Every state change is a conditional UPDATE
on the state it expects, so a late or repeated update is a no-op, never a corruption,
and every change that happens writes one message_event."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dripcare.store.models import Message, MessageEvent

LEASE = timedelta(minutes=5)
FINAL = ("delivered", "undelivered", "failed", "expired", "cancelled")
message = Message.__table__
event = MessageEvent.__table__


def record_event(session: Session, message_id: int, at: datetime, kind: str, status: str,
                 reason: str | None = None, detail: str | None = None, by: str | None = None) -> None:
    session.execute(sa.insert(event).values(message_id=message_id, at=at, kind=kind, status=status,
                                            reason=reason, detail=detail, by=by))


def transition(session: Session, message_id: int, expected: Iterable[str], status: str, at: datetime,
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


def insert_planned(session: Session, at: datetime, by: str | None, rows: list[dict]) -> list[int]:
    """New rows from planning, each with its `planned` (or `skipped`) event, in two bulk
    statements: an enrollment plans dozens of rows at once."""
    if not rows:
        return []
    ids = session.execute(sa.insert(message).returning(message.c.id, sort_by_parameter_order=True),
                          [dict(updated_at=at, **row) for row in rows]).scalars().all()
    session.execute(sa.insert(event), [
        dict(message_id=i, at=at, kind="planned" if row["status"] == "scheduled" else "skipped",
             status=row["status"], reason=row.get("reason"), detail=None, by=by) for i, row in zip(ids, rows)])
    return ids


def claim_due(engine: Engine, now: datetime, limit: int, worker_id: str,
              channels: Iterable[str]) -> list[int]:
    """Claim up to `limit` due rows in one atomic statement: `sending` with a 5-minute
    lease. On PostgreSQL, SKIP LOCKED lets any number of workers share the outbox."""
    due = (sa.select(message.c.id)
           .where(message.c.status == "scheduled", message.c.due_at <= now,
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
            .values(status="sending", lease_until=now + LEASE, claimed_by=worker_id,
                    ever_claimed=True, updated_at=now)
            .returning(message.c.id)).scalars().all()
        if ids:
            session.execute(sa.insert(event), [dict(message_id=i, at=now, kind="claimed", status="sending",
                                                    detail=worker_id) for i in ids])
    return sorted(ids)


def needing_resolution(session: Session, now: datetime) -> list[Message]:
    """`unconfirmed` rows whose attempt is over 2 minutes old, and `sending` rows whose
    lease ran out (their worker died): both are resolved before anything new is claimed."""
    return list(session.exec(
        sa.select(Message).where(sa.or_(
            sa.and_(Message.status == "unconfirmed", Message.attempted_at <= now - timedelta(minutes=2)),
            sa.and_(Message.status == "sending", Message.lease_until <= now))).order_by(Message.id)
    ).scalars())


def release(session: Session, message_ids: Iterable[int], now: datetime, worker_id: str) -> int:
    """Put claimed-but-unsent rows back (shutdown): nothing was sent for them."""
    count = 0
    for message_id in message_ids:
        count += transition(session, message_id, ("sending",), "scheduled", now, "released",
                            detail=worker_id, lease_until=None, claimed_by=None)
    return count


def release_unattempted(session: Session, worker_id: str, now: datetime) -> int:
    """At shutdown: rows this worker claimed but never handed to a provider go back."""
    ids = session.execute(sa.select(message.c.id).where(
        message.c.status == "sending", message.c.claimed_by == worker_id, message.c.attempted_at.is_(None))
    ).scalars().all()
    return release(session, ids, now, worker_id)
