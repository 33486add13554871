"""Worker processes as the rest of dripcare sees them (SPEC 5, 7 "Workers"): a heartbeat
in real time whatever DRIPCARE_NOW says (the simulated time beside it), a clean stop,
which workers are running or stopped, the one-worker lock of a SQLite file, and a
database that refuses writes told once a minute instead of once a pass."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlmodel import Session

from dripcare.config.clock import SystemClock
from dripcare.store import outbox, workers
from dripcare.store.db import WorkerLockHeld, hold_worker_lock, transaction, write_failure

__all__ = ["DatabaseWatch", "WorkerLockHeld", "database_trouble", "forget_gone", "heartbeat", "heartbeat_age",
           "hold_worker_lock", "let_go", "new_worker_id", "real_now", "stale_after", "stop", "workers_shown",
           "youngest_age"]

HEARTBEATS_ALLOWED = 3  # dispatch intervals a heartbeat may be old before a worker counts as stopped


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def real_now() -> datetime:
    """Liveness is judged on the wall clock, never on a simulated one."""
    return datetime.now(timezone.utc)


def heartbeat(rt, worker_id: str) -> None:
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


def let_go(lock: int | None) -> None:
    """Release the SQLite worker lock (`hold_worker_lock`) before the process ends."""
    if lock is not None:
        os.close(lock)


def stale_after(interval: float, beats: int = HEARTBEATS_ALLOWED) -> timedelta:
    return timedelta(seconds=beats * interval)


def heartbeat_age(rt) -> float | None:
    """Seconds since the youngest heartbeat of a worker that has not stopped, in real time;
    None when there is none (the web's /healthz/worker)."""
    with Session(rt.engine) as session:
        return youngest_age(session)


def youngest_age(session: Session) -> float | None:
    """A heartbeat from the future (a clock set wrong, or a row written on a simulated
    clock by an older version) is no proof of life: it is skipped, never "healthy"."""
    now = real_now()
    ages = [(now - w.heartbeat_at).total_seconds() for w in workers.running(session)]
    fresh = [age for age in ages if age >= 0]
    return min(fresh) if fresh else None


def workers_shown(engine, interval: float, now: datetime | None = None) -> list[dict]:
    """Every worker row (gone ones are removed after 7 days), as `status` shows them: a
    worker is running only while its heartbeat is younger than 3 dispatch intervals;
    one that stopped cleanly, or went silent (killed, its machine gone), is stopped."""
    now = now or real_now()
    limit = stale_after(interval)
    with Session(engine) as session:
        rows = workers.listed(session)
    shown = []
    for w in rows:
        age = (now - w.heartbeat_at).total_seconds()
        running = workers.is_alive(w, now, limit)
        shown.append({"id": w.id, "hostname": w.hostname, "pid": w.pid, "started_at": w.started_at,
                      "state": "running" if running else "stopped",
                      "stopped": None if running else ("cleanly" if w.stopped_at else "no heartbeat"),
                      "last_heartbeat_at": w.heartbeat_at,
                      "heartbeat_age_seconds": round(age, 1) if running else None,
                      "simulated_at": w.simulated_at})
    return shown


# --- the database refusing writes ------------------------------------------------------------

# Why the database refused (read-only, disk full, locked, unreachable), or None: the
# store's reading, named here for the worker, which reads no store module itself.
database_trouble = write_failure


class DatabaseWatch:
    """A database that refuses writes is said once a minute, not once a pass: the worker
    keeps trying (nothing is lost: rows stay where they were), and says so once when the
    database takes writes again. Any other error is logged with its traceback once, then
    once a minute while it repeats."""

    EVERY = 60.0

    def __init__(self, log: logging.Logger, every: float = EVERY, clock: Callable[[], float] = time.monotonic):
        self.log, self.every, self.clock = log, every, clock
        self.since: float | None = None  # when the database first refused, while it does
        self._said: dict[str, float] = {}

    @property
    def refusing(self) -> bool:
        return self.since is not None

    def failed(self, what: str, error: BaseException) -> None:
        why = database_trouble(error)
        now = self.clock()
        key = "database" if why else f"{what}:{type(error).__name__}"  # one outage, whatever its words
        first = key not in self._said
        if not first and now - self._said[key] < self.every:
            return
        self._said[key] = now
        if why:
            if self.since is None:
                self.since = now
            self.log.error("the database cannot be written (%s) during %s; retrying, nothing is lost; "
                           "told again in a minute while it lasts: %s", why, what, _first_line(error))
        elif first:
            self.log.exception("%s failed; trying again", what)
        else:
            self.log.error("%s failed again: %s: %s", what, type(error).__name__, _first_line(error))

    def succeeded(self) -> None:
        if self.since is not None:
            self.log.warning("the database takes writes again after %.0f s; carrying on", self.clock() - self.since)
            self.since = None
            self._said.pop("database", None)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
