"""The worker table (SPEC 5, 7 "Workers"): each worker process, its heartbeat in real
time (the simulated time beside it), and whether it stopped cleanly."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import Worker

FORGET_AFTER = timedelta(days=7)


def beat(session: Session, worker_id: str, hostname: str, pid: int, real_now: datetime,
         simulated_now: datetime | None) -> None:
    row = session.get(Worker, worker_id) or Worker(id=worker_id, hostname=hostname, pid=pid, started_at=real_now,
                                                   heartbeat_at=real_now)
    row.heartbeat_at, row.simulated_at = real_now, simulated_now
    session.add(row)


def stopped(session: Session, worker_id: str, real_now: datetime) -> None:
    row = session.get(Worker, worker_id)
    if row is not None:
        row.stopped_at = real_now
        session.add(row)


def running(session: Session) -> list[Worker]:
    """Workers that have not said they stopped, youngest heartbeat first."""
    return session.execute(sa.select(Worker).where(Worker.stopped_at.is_(None))
                           .order_by(Worker.heartbeat_at.desc())).scalars().all()


def listed(session: Session) -> list[Worker]:
    """Every worker row, running or not, youngest heartbeat first."""
    return session.execute(sa.select(Worker).order_by(Worker.heartbeat_at.desc())).scalars().all()


def is_alive(w: Worker, real_now: datetime, stale_after: timedelta) -> bool:
    """Not stopped, and its heartbeat fresh; an age below zero (a heartbeat from the
    future) is never fresh."""
    return w.stopped_at is None and timedelta(0) <= real_now - w.heartbeat_at < stale_after


def alive(session: Session, real_now: datetime, stale_after: timedelta) -> list[Worker]:
    """Running workers whose heartbeat is fresh."""
    return [w for w in running(session) if is_alive(w, real_now, stale_after)]


def forget_gone(session: Session, real_now: datetime) -> int:
    """Rows of workers gone (stopped, or silent) for 7 days are removed."""
    result = session.execute(sa.delete(Worker).where(
        sa.func.coalesce(Worker.stopped_at, Worker.heartbeat_at) < real_now - FORGET_AFTER))
    return result.rowcount or 0


def workers_clock(session: Session, now: datetime, real_now: datetime, speed: float) -> datetime:
    """The instant the workers' clock shows now. Sends are stamped on it; under DRIPCARE_NOW
    each process's simulated clock starts when the process does, so the workers' is read
    from their latest heartbeat (its simulated time, moved on by the real time since)."""
    latest = session.execute(sa.select(Worker.heartbeat_at, Worker.simulated_at).where(
        Worker.simulated_at.is_not(None)).order_by(Worker.heartbeat_at.desc()).limit(1)).first()
    if latest is None:
        return now
    beat, simulated = latest
    return simulated + (real_now - beat) * speed
