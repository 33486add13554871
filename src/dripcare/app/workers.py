"""Worker processes as the rest of dripcare sees them (SPEC 5, 7 "Workers"): a heartbeat
in real time whatever DRIPCARE_NOW says (the simulated time beside it), a clean stop,
and which workers are alive, stale or stopped."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta, timezone

from dripcare.store import outbox, workers
from dripcare.store.db import transaction


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def real_now() -> datetime:
    """Liveness is judged on the wall clock, never on a simulated one."""
    return datetime.now(timezone.utc)


def heartbeat(rt, worker_id: str) -> None:
    from dripcare.config.clock import SystemClock

    simulated = None if isinstance(rt.clock, SystemClock) else rt.clock.now()
    with transaction(rt.engine) as session:
        workers.beat(session, worker_id, socket.gethostname(), os.getpid(), real_now(), simulated)


def stop(rt, worker_id: str) -> int:
    """A clean stop: rows claimed but never handed to a provider go back; the worker is marked stopped."""
    with transaction(rt.engine) as session:
        released = outbox.release_unattempted(session, worker_id, rt.clock.now())
        workers.stopped(session, worker_id, real_now())
    return released


def forget_gone(rt) -> int:
    with transaction(rt.engine) as session:
        return workers.forget_gone(session, real_now())


def stale_after(interval: float, beats: int = 3) -> timedelta:
    return timedelta(seconds=beats * interval)


def heartbeat_age(rt) -> float | None:
    """Seconds since the youngest heartbeat of a running worker, in real time; None when none runs."""
    from sqlmodel import Session

    with Session(rt.engine) as session:
        running = workers.running(session)
    return (real_now() - running[0].heartbeat_at).total_seconds() if running else None
