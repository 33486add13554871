"""`dripcare report` (SPEC 9): what went out, what failed, who opted out, what patients
answered, since a date. Counts only: no name, number or text leaves this module, so a
report can be pasted into an email or a board paper."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain.campaign import Campaign
from dripcare.domain.contacts import CONSENT_SOURCES as SOURCES
from dripcare.domain.inputs import BadInput
from dripcare.store.models import Consent, Enrollment, InboundMessage, Message
from dripcare.domain.timing import resolve_wall, zone

REPORTED = ("sent", "delivered", "undelivered", "failed", "expired", "skipped", "cancelled")
FAILED = ("failed", "undelivered")
REPLY_KINDS = ("opt_out", "opt_in", "help", "crisis", "reply")
CHANNELS = ("sms", "email")
DEFAULT_WINDOW = timedelta(days=30)
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def since_instant(text: str | None, now: datetime, tz_name: str) -> datetime:
    """--since DATE is midnight of that day in the clinic's zone; without it, 30 days back."""
    if text is None:
        return (now - DEFAULT_WINDOW).replace(microsecond=0)
    try:
        day = date.fromisoformat(text.strip()) if DATE.match(text.strip()) else None
    except ValueError:
        day = None
    if day is None:
        raise BadInput(f"--since {text!r} is not a date like 2027-03-01 (YYYY-MM-DD)")
    start = resolve_wall(datetime.combine(day, time()), zone(tz_name))
    if start > now:
        raise BadInput(f"--since {text!r} is in the future (today is {now.astimezone(zone(tz_name)).date()})")
    return start


def _in_window(since: datetime):
    # A message counts when it was due in the window, or went out in it (a retry, a late send).
    return sa.or_(Message.due_at >= since, Message.sent_at >= since)


def message_counts(session: Session, since: datetime, campaigns: dict[str, Campaign]) -> list[dict]:
    """Per campaign, step and channel: how many messages are in each reported state."""
    rows = session.execute(
        sa.select(Enrollment.campaign_id, Message.step_id, Message.channel, Message.status, sa.func.count())
        .join(Enrollment, Message.enrollment_id == Enrollment.id)
        .where(_in_window(since), Message.status.in_(REPORTED))
        .group_by(Enrollment.campaign_id, Message.step_id, Message.channel, Message.status)).all()
    table: dict[tuple, dict] = {}
    for campaign, step, channel, status, n in rows:
        table.setdefault((campaign, step, channel), dict.fromkeys(REPORTED, 0))[status] = n
    return [{"campaign": c, "step": s, "channel": ch, **counts}
            for (c, s, ch), counts in sorted(table.items(), key=lambda item: _step_order(item[0], campaigns))]


def _step_order(key: tuple, campaigns: dict[str, Campaign]) -> tuple:
    # Steps in the order the campaign file lists them (the order patients get them in).
    campaign, step, channel = key
    steps = [s.id for s in campaigns[campaign].steps] if campaign in campaigns else []
    return campaign, steps.index(step) if step in steps else len(steps), step, CHANNELS.index(channel)


def failures(session: Session, since: datetime) -> dict[str, int]:
    """Failed and undelivered messages by reason: the provider's code, or max_attempts."""
    rows = session.execute(sa.select(Message.reason, sa.func.count()).where(
        _in_window(since), Message.status.in_(FAILED)).group_by(Message.reason)).all()
    return dict(sorted((reason or "unknown", n) for reason, n in rows))


def opt_outs(session: Session, since: datetime) -> dict[str, int]:
    """Consent revoked in the window, by who or what revoked it."""
    rows = session.execute(sa.select(Consent.source, sa.func.count()).where(
        Consent.granted.is_(False), Consent.at >= since).group_by(Consent.source)).all()
    return {**dict.fromkeys(SOURCES, 0), **dict(rows)}


def replies(session: Session, since: datetime) -> dict[str, int]:
    rows = session.execute(sa.select(InboundMessage.taken_as, sa.func.count()).where(
        InboundMessage.received_at >= since).group_by(InboundMessage.taken_as)).all()
    return {**dict.fromkeys(REPLY_KINDS, 0), **dict(rows)}


def deliverability(messages: list[dict]) -> dict[str, dict]:
    """Per channel, delivered / (delivered + undelivered + failed). Only status callbacks
    report delivered or undelivered, so without one (email, a console transport) the rate
    would be a guess: it is null."""
    result = {}
    for channel in CHANNELS:
        counts = {s: sum(m[s] for m in messages if m["channel"] == channel) for s in ("delivered", *FAILED)}
        reached = counts["delivered"] + counts["undelivered"]
        total = sum(counts.values())
        counts["rate"] = round(counts["delivered"] / total, 4) if reached else None
        result[channel] = counts
    return result


def build(session: Session, since: datetime, now: datetime, campaigns: dict[str, Campaign]) -> dict:
    messages = message_counts(session, since, campaigns)
    totals = {s: sum(m[s] for m in messages) for s in REPORTED}
    return {"since": since, "until": now, "messages": messages, "totals": totals,
            "failures": failures(session, since), "opt_outs": opt_outs(session, since),
            "replies": replies(session, since), "deliverability": deliverability(messages)}
