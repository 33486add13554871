"""How dripcare says things to front-desk staff (SPEC 9): times in the patient's zone,
phone numbers as people write them, channels, counts, and campaign steps in words.
One place, so a summary line, a note and a timeline all read alike."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import phonenumbers

from dripcare.domain.campaign import Step
from dripcare.domain.contacts import CHANNELS
from dripcare.domain.timing import Offset, zone

CHANNEL_WORD = {"sms": "SMS", "email": "email"}
ANCHOR_WORD = {"enrollment": "enrollment", "first_session": "the first session",
               "each_session": "each session", "last_session": "the last session"}


def when(instant: datetime | None, tz_name: str, *, year: bool = True) -> str:
    """`Fri 12 Mar 2027 17:00 EST`: a UTC instant as the patient's clock shows it."""
    if instant is None:
        return ""
    local = instant.astimezone(zone(tz_name))
    day = f"{local:%a} {local.day} {local:%b}" + (f" {local.year}" if year else "")
    return f"{day} {local:%H:%M %Z}"


def short_when(instant: datetime, tz_name: str, this_year: int) -> str:
    """`Fri 12 Mar 17:00` for a table; the year only when it is not `this_year`."""
    local = instant.astimezone(zone(tz_name))
    year = f" {local.year}" if local.year != this_year else ""
    return f"{local:%a} {local.day} {local:%b}{year} {local:%H:%M}"


def phone(e164: str | None) -> str:
    """`+1 780-555-0123`: the stored E.164 number in its international format."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164  # stored before validation was this strict: show it as it is
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def per_channel(counts: Mapping[str, int]) -> str:
    """`3 SMS, 1 email`; empty when there is nothing."""
    return ", ".join(f"{counts[c]} {CHANNEL_WORD[c]}" for c in CHANNELS if counts.get(c))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def duration(delta: timedelta) -> str:
    """`2 hours 30 minutes`, `3 days`; never Python's `3 days, 0:00:00`."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [plural(n, w) for n, w in ((days, "day"), (hours, "hour"), (minutes, "minute")) if n]
    return " ".join(parts) or "0 minutes"


def offset_words(offset: Offset, anchor: str) -> str:
    """`7 days before the first session`, `at enrollment`, `1 day after each session`."""
    target = ANCHOR_WORD[anchor]
    spans = [plural(abs(offset.days), "day")] if offset.days else []
    if offset.elapsed:
        spans.append(duration(offset.elapsed))
    if not spans:
        return f"at {target}" if anchor == "enrollment" else f"when {target} starts"
    return f"{' '.join(spans)} {'before' if offset.negative else 'after'} {target}"


def expiry_words(step: Step) -> str:
    """When a step's message is too late to send (SPEC 6 rule 3)."""
    if step.expires == "session_start" or (step.expires is None and step.session_anchored and step.offset.negative):
        return "expires at the session"
    if isinstance(step.expires, timedelta):
        return f"expires {duration(step.expires)} after it is due"
    return "expires 24 hours after it is due"


def step_words(step: Step) -> str:
    """`7 days before the first session, at 10:00; email; expires at the session`."""
    timing = offset_words(step.offset, step.anchor) + (f", at {step.at:%H:%M}" if step.at else "")
    channels = " and ".join(CHANNEL_WORD[c] for c in step.channels)
    parts = [timing, channels, expiry_words(step)]
    if step.when == "completed":
        parts.append("only after a completed session")
    if step.priority != 50:
        parts.append(f"priority {step.priority} (higher goes first under the daily limit)")
    return "; ".join(parts)
