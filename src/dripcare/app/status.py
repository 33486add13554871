"""What an operator needs at a glance (`dripcare status`): workers running or stopped,
the queue, the oldest overdue message, paused channels, failures, the configured send
rate beside what went out in the last minute, refused clinic files, and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from dripcare.app.workers import real_now, workers_shown
from dripcare.store import channels, config_files, outbox, workers

OVERDUE_AFTER = timedelta(minutes=5)
RATE_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Operation:
    """The settings `status` reports against: the deployment's rates and dispatch interval."""

    rates: dict[str, float]
    interval: float
    clock: str = "system clock"
    speed: float = 1.0


def campaign_errors(session: Session) -> dict[str, str]:
    """Refused clinic files by file name ("clinic.toml", "campaigns/ketamine-iv.toml")."""
    return config_files.errors(session)


def send_rates(session: Session, until: datetime, op: Operation) -> dict[str, dict]:
    """Per channel: the configured rate (the whole deployment's) and what went out in the
    last real minute, as the workers' clock counts it."""
    sent = outbox.sent_by_channel(session, until - RATE_WINDOW * op.speed, until)
    return {channel: {"configured_per_second": rate, "sent_last_minute": sent.get(channel, 0),
                      "achieved_per_second": round(sent.get(channel, 0) / RATE_WINDOW.total_seconds(), 2)}
            for channel, rate in op.rates.items()}


def snapshot(engine, now: datetime, op: Operation) -> dict:
    """Everything `status` shows, read in one session (the workers' rows in their own)."""
    shown = workers_shown(engine, op.interval)
    with Session(engine) as session:
        return {"now": now, "clock": op.clock, "workers": shown,
                "workers_running": sum(1 for w in shown if w["state"] == "running"),
                "queue": outbox.queue_state(session, now, OVERDUE_AFTER),
                "send_rates": send_rates(session, workers.workers_clock(session, now, real_now(), op.speed), op),
                "paused_channels": {c: {"reason": s.reason, "since": s.since, "until": s.until}
                                    for c, s in channels.paused_channels(session, now).items()},
                "failures": outbox.failures_by_reason(session),
                "carrier_filtered_30007": outbox.carrier_filtered(session),
                "campaign_errors": campaign_errors(session)}
