"""What an operator needs at a glance: workers, queue, overdue, pauses, failures."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store import channels
from dripcare.store import config_files
from dripcare.store.models import Message, MessageEvent, Worker

OVERDUE_AFTER = timedelta(minutes=5)


def workers(session: Session, now: datetime) -> list[dict]:
    rows = session.execute(sa.select(Worker).where(Worker.stopped_at.is_(None))
                           .order_by(Worker.heartbeat_at.desc())).scalars()
    return [{"id": w.id, "hostname": w.hostname, "pid": w.pid, "started_at": w.started_at,
             "heartbeat_age_seconds": round((now - w.heartbeat_at).total_seconds(), 1)} for w in rows]


def youngest_heartbeat_age(session: Session, now: datetime) -> float | None:
    latest = session.execute(sa.select(sa.func.max(Worker.heartbeat_at)).where(Worker.stopped_at.is_(None))).scalar()
    return None if latest is None else (now - latest).total_seconds()


def queue(session: Session, now: datetime) -> dict:
    counts = dict(session.execute(sa.select(Message.status, sa.func.count()).group_by(Message.status)).all())
    due = sa.func.coalesce(Message.next_attempt_at, Message.due_at)
    due_now = session.execute(sa.select(sa.func.count()).select_from(Message).where(
        Message.status == "scheduled", due <= now)).scalar()
    oldest = session.execute(sa.select(Message.id, due).where(
        Message.status == "scheduled", due <= now - OVERDUE_AFTER).order_by(due).limit(1)).first()
    return {"by_status": counts, "due_now": due_now,
            "oldest_overdue": None if oldest is None else {
                "id": oldest[0], "due_at": oldest[1], "minutes": int((now - oldest[1]).total_seconds() // 60)}}


def failures(session: Session) -> dict[str, int]:
    rows = session.execute(sa.select(Message.reason, sa.func.count()).where(
        Message.status.in_(("failed", "undelivered", "expired"))).group_by(Message.reason)).all()
    return {reason or "unknown": n for reason, n in rows}


def carrier_filtered(session: Session) -> int:
    """Twilio 30007 answers: carriers filtering our texts, counted so someone looks."""
    return session.execute(sa.select(sa.func.count()).select_from(MessageEvent).where(
        MessageEvent.detail == "twilio:30007")).scalar()


def campaign_errors(session: Session) -> dict[str, str]:
    return config_files.errors(session)


def snapshot(session: Session, now: datetime) -> dict:
    return {"now": now, "workers": workers(session, now), "queue": queue(session, now),
            "paused_channels": {c: {"reason": s.reason, "since": s.since, "until": s.until}
                                for c, s in channels.paused_channels(session, now).items()},
            "failures": failures(session), "carrier_filtered_30007": carrier_filtered(session),
            "campaign_errors": campaign_errors(session)}
