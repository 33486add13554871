"""What an operator needs at a glance (`dripcare status`): workers running or stopped,
the queue, the oldest overdue message, paused channels, failures, the configured send
rate beside what went out in the last minute, refused clinic files, and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app.workers import real_now, workers_shown
from dripcare.store import channels
from dripcare.store import config_files
from dripcare.store.models import Message, MessageEvent, Worker

OVERDUE_AFTER = timedelta(minutes=5)
RATE_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Operation:
    """The settings `status` reports against: the deployment's rates and dispatch interval."""

    rates: dict[str, float]
    interval: float
    clock: str = "system clock"
    speed: float = 1.0


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
    """Refused clinic files by file name ("clinic.toml", "campaigns/ketamine-iv.toml")."""
    return config_files.errors(session)


def workers_clock(session: Session, now: datetime, speed: float) -> datetime:
    """The instant the workers' clock shows now. Sends are stamped on it; under DRIPCARE_NOW
    each process's simulated clock starts when the process does, so the workers' is read
    from their latest heartbeat (its simulated time, moved on by the real time since)."""
    latest = session.execute(sa.select(Worker.heartbeat_at, Worker.simulated_at).where(
        Worker.simulated_at.is_not(None)).order_by(Worker.heartbeat_at.desc()).limit(1)).first()
    if latest is None:
        return now
    beat, simulated = latest
    return simulated + (real_now() - beat) * speed


def send_rates(session: Session, until: datetime, op: Operation) -> dict[str, dict]:
    """Per channel: the configured rate (the whole deployment's) and what went out in the
    last real minute, as the workers' clock counts it."""
    since = until - RATE_WINDOW * op.speed
    sent = dict(session.execute(sa.select(Message.channel, sa.func.count()).where(
        Message.sent_at > since, Message.sent_at <= until).group_by(Message.channel)).all())
    return {channel: {"configured_per_second": rate, "sent_last_minute": sent.get(channel, 0),
                      "achieved_per_second": round(sent.get(channel, 0) / RATE_WINDOW.total_seconds(), 2)}
            for channel, rate in op.rates.items()}


def snapshot(engine, now: datetime, op: Operation) -> dict:
    """Everything `status` shows, read in one session (the workers' rows in their own)."""
    shown = workers_shown(engine, op.interval)
    with Session(engine) as session:
        return {"now": now, "clock": op.clock, "workers": shown,
                "workers_running": sum(1 for w in shown if w["state"] == "running"),
                "queue": queue(session, now),
                "send_rates": send_rates(session, workers_clock(session, now, op.speed), op),
                "paused_channels": {c: {"reason": s.reason, "since": s.since, "until": s.until}
                                    for c, s in channels.paused_channels(session, now).items()},
                "failures": failures(session), "carrier_filtered_30007": carrier_filtered(session),
                "campaign_errors": campaign_errors(session)}
