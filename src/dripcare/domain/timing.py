"""Durations, local wall times, quiet hours and DST: pure functions of their arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc
_DURATION = re.compile(r"^(?P<sign>[+-]?)(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Offset:
    """A signed duration: `days` are calendar days in the patient's zone, `elapsed` is clock time."""

    days: int = 0
    elapsed: timedelta = timedelta(0)

    @property
    def negative(self) -> bool:
        return self.days < 0 or self.elapsed < timedelta(0)


def parse_offset(text: str) -> Offset:
    """`-7d`, `-48h`, `-2h30m`, `+1d`, `0m`; ValueError for anything else."""
    match = _DURATION.match(text.strip().replace(" ", ""))
    if not text.strip() or not match or not any(match[unit] for unit in "dhm"):
        raise ValueError(f"{text!r} is not a duration like -7d, -48h, -2h30m, +1d or 0m")
    sign = -1 if match["sign"] == "-" else 1
    days = int(match["d"] or 0)
    elapsed = timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))
    return Offset(days=sign * days, elapsed=sign * elapsed)


def parse_hhmm(text: str) -> time:
    match = _HHMM.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time of day as HH:MM, e.g. 09:30")
    return time(int(match[1]), int(match[2]))


def zone(name: str) -> ZoneInfo:
    """The IANA zone, or ValueError saying it is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone, e.g. America/Edmonton") from None


def wall_exists(local: datetime, tz: ZoneInfo) -> bool:
    aware = local.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local


def resolve_wall(local: datetime, tz: ZoneInfo) -> datetime:
    """A local wall time as a UTC instant: one in a DST gap moves forward to the first
    wall time that exists; one that exists twice takes the first (SPEC 6 rule 2)."""
    probe = local.replace(tzinfo=None)
    while not wall_exists(probe, tz):  # gaps are at most a few hours; this walks minutes
        probe = (probe + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return probe.replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def apply_offset(anchor: datetime, offset: Offset, tz: ZoneInfo, at: time | None = None) -> datetime:
    """anchor + offset, with calendar days in the patient's zone; with `at`, that time of
    day on the local date the result falls on."""
    instant = anchor
    if offset.days:
        instant = resolve_wall(local_wall(anchor, tz) + timedelta(days=offset.days), tz)
    instant = instant + offset.elapsed
    if at is not None:
        instant = resolve_wall(datetime.combine(local_wall(instant, tz).date(), at), tz)
    return instant.astimezone(UTC)


@dataclass(frozen=True)
class QuietHours:
    """`[start, end)` in the patient's local time; crosses midnight when start > end."""

    start: time
    end: time

    def contains(self, instant: datetime, tz: ZoneInfo) -> bool:
        return self.contains_time(local_wall(instant, tz).time())

    def contains_time(self, t: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def period(self, instant: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The quiet period holding `instant`, as (start, end) UTC instants."""
        local = local_wall(instant, tz)
        day = local.date()
        if self.start < self.end:
            start_day = end_day = day
        elif local.time() >= self.start:
            start_day, end_day = day, day + timedelta(days=1)
        else:
            start_day, end_day = day - timedelta(days=1), day
        return (resolve_wall(datetime.combine(start_day, self.start), tz),
                resolve_wall(datetime.combine(end_day, self.end), tz))

    def end_after(self, instant: datetime, tz: ZoneInfo) -> datetime:
        """`instant` itself when outside quiet hours, else the end of its quiet period."""
        return self.period(instant, tz)[1] if self.contains(instant, tz) else instant


def send_window(due: datetime, expires: datetime, tz: ZoneInfo, quiet: QuietHours,
                floor: datetime | None) -> datetime | None:
    """Rule 4 without `now`: a due time inside quiet hours moves forward to their end if
    that is before expiry, else back to the last minute before they began (never before
    `floor`); None when neither fits."""
    if not quiet.contains(due, tz):
        return due if due < expires else None
    start, end = quiet.period(due, tz)
    if end < expires:
        return end
    back = start - timedelta(minutes=1)
    if back < expires and (floor is None or back >= floor):
        return back
    return None


def send_time_from(now: datetime, due: datetime | None, expires: datetime, tz: ZoneInfo,
                   quiet: QuietHours) -> datetime | None:
    """When a new row can go out: its due time, or now if that has passed (rule 5),
    out of quiet hours and before expiry; None when there is no such time."""
    if due is None:
        return None
    if due >= now:
        return due
    candidate = quiet.end_after(now, tz)
    return candidate if candidate < expires else None


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()
