"""What the web process's health routes tell (SPEC 8 `/healthz`, `/healthz/worker`): the
database answers, the youngest worker heartbeat's age in real time (whatever DRIPCARE_NOW
says), the channels paused now."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from dripcare.app.workers import stale_after, youngest_age
from dripcare.store import channels


@dataclass(frozen=True)
class Health:
    heartbeat_age: float | None  # seconds; None when no worker runs
    paused_channels: list[str]


def health(rt) -> Health:
    """Raises whatever the database driver raises when the database does not answer."""
    with Session(rt.engine) as session:
        paused = sorted(channels.paused_channels(session, rt.clock.now()))
        return Health(youngest_age(session), paused)


def worker_limit(dispatch_interval: float) -> float:
    return stale_after(dispatch_interval).total_seconds()


def worker_fresh(age: float | None, dispatch_interval: float) -> bool:
    """The youngest heartbeat (never one from the future: `youngest_age`) within the limit."""
    return age is not None and age < worker_limit(dispatch_interval)
