"""`dripcare report` (SPEC 9): how the clinic's messages fared, who opted out and how,
what patients answered, since a date. Counts only: no name, number or text reaches a
report, so it can be pasted into an email or a board paper (the queries are in
`store/reports.py`; the page is drawn by `app/pages.py`)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from sqlmodel import Session

from dripcare.domain.contacts import CHANNELS, CONSENT_SOURCES as SOURCES
from dripcare.domain.inputs import BadInput
from dripcare.domain.statuses import NOT_DELIVERED, REPORTED, MessageStatus as S
from dripcare.domain.timing import resolve_wall, zone
from dripcare.store import reports

# "planned": not known to have gone out yet (waiting, being sent, or in doubt); the rest
# are the states a manager reads (domain/statuses.py REPORTED).
PLANNED = (S.SCHEDULED, S.SENDING, S.UNCONFIRMED)
COLUMNS = ("planned", *(str(s) for s in REPORTED))
REPLY_KINDS = ("opt_out", "opt_in", "help", "crisis", "reply")
DEFAULT_WINDOW = timedelta(days=30)
DAYS_AT_MOST = 62  # a longer window counts opt-outs by week, so a chart stays readable
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


def _column(status: str) -> str:
    return "planned" if status in PLANNED else str(status)


def message_rows(counts: list[tuple], campaigns: dict) -> list[dict]:
    """Per campaign, step and channel: how many messages are in each state, and the delivery rate."""
    table: dict[tuple, dict] = {}
    for campaign, step, channel, status, n in counts:
        row = table.setdefault((campaign, step, channel), dict.fromkeys(COLUMNS, 0))
        row[_column(status)] += n
    return [{"campaign": c, "step": s, "channel": ch, **row, "rate": delivery_rate(row)}
            for (c, s, ch), row in sorted(table.items(), key=lambda item: _step_order(item[0], campaigns))]


def _step_order(key: tuple, campaigns: dict) -> tuple:
    # Steps in the order the campaign file lists them (the order patients get them in).
    campaign, step, channel = key
    steps = [s.id for s in campaigns[campaign].steps] if campaign in campaigns else []
    return campaign, steps.index(step) if step in steps else len(steps), step, CHANNELS.index(channel)


def delivery_rate(counts: dict) -> float | None:
    """delivered / (delivered + undelivered + failed). Only status callbacks report
    delivered or undelivered, so without one (email, a console transport) the rate would
    be a guess: it is None."""
    reached = counts["delivered"] + counts["undelivered"]
    total = reached + counts["failed"]
    return round(counts["delivered"] / total, 4) if reached else None


def deliverability(messages: list[dict]) -> dict[str, dict]:
    result = {}
    for channel in CHANNELS:
        counts = {s: sum(m[s] for m in messages if m["channel"] == channel) for s in ("delivered", *NOT_DELIVERED)}
        result[channel] = {**counts, "rate": delivery_rate(counts)}
    return result


def opt_outs_over_time(revoked: list[tuple[datetime, str]], since: datetime, until: datetime,
                       tz_name: str) -> dict:
    """Opt-outs per local day (per week, Mondays, over a longer window), every period
    listed, the quiet ones too: a chart of them shows when people left and how."""
    tz = zone(tz_name)
    # Every opt-out counted has its period, even one stamped after `until` by another clock.
    first, last = since.astimezone(tz).date(), max([until] + [at for at, _ in revoked]).astimezone(tz).date()
    weekly = (last - first).days + 1 > DAYS_AT_MOST
    step = timedelta(days=7 if weekly else 1)

    def period(day: date) -> date:
        return day - timedelta(days=day.weekday()) if weekly else day

    periods: dict[date, dict] = {}
    day = period(first)
    while day <= last:
        periods[day] = dict.fromkeys(SOURCES, 0)
        day += step
    for at, source in revoked:
        bucket = periods[period(at.astimezone(tz).date())]
        bucket[source] = bucket.get(source, 0) + 1
    return {"unit": "week" if weekly else "day",
            "periods": [{"start": d.isoformat(), **counts} for d, counts in periods.items()]}


def _campaign(session: Session, campaign: str | None, campaigns: dict) -> str | None:
    if campaign is None:
        return None
    campaign = campaign.strip()
    if campaign not in campaigns and not reports.campaign_used(session, campaign):
        known = ", ".join(sorted(campaigns)) or "none"
        raise BadInput(f"--campaign {campaign!r} is not a campaign in config/campaigns and has no enrollments "
                       f"(known: {known})")
    return campaign


def build_report(rt, since: str | None = None, campaign: str | None = None) -> dict:
    """The whole report as one document: times in the clinic's zone, counts only."""
    tz_name = rt.clinic.timezone
    now = rt.clock.now().replace(microsecond=0)  # a report's "until" to the second
    start = since_instant(since, now, tz_name)
    with Session(rt.engine) as session:
        campaign = _campaign(session, campaign, rt.campaigns)
        messages = message_rows(reports.message_counts(session, start, campaign), rt.campaigns)
        failures = reports.failure_reasons(session, start, NOT_DELIVERED, campaign)
        revoked = reports.revocations(session, start, campaign)
        replies = reports.reply_kinds(session, start, campaign)
    opt_outs = dict.fromkeys(SOURCES, 0)
    for _, source in revoked:
        opt_outs[source] = opt_outs.get(source, 0) + 1
    return {"since": start.astimezone(zone(tz_name)).isoformat(), "until": now.astimezone(zone(tz_name)).isoformat(),
            "campaign": campaign, "messages": messages,
            "totals": {c: sum(m[c] for m in messages) for c in COLUMNS},
            "failures": failures, "opt_outs": opt_outs,
            "opt_outs_over_time": opt_outs_over_time(revoked, start, now, tz_name),
            "replies": {**dict.fromkeys(REPLY_KINDS, 0), **replies},
            "deliverability": deliverability(messages)}
