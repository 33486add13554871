"""timing: durations, local wall times with DST gaps and folds, quiet hours (SPEC 3.3, 6.2, 6.4)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dripcare.domain.timing import (Offset, QuietHours, apply_offset, parse_hhmm, parse_offset, resolve_wall,
                             send_time_from, send_window, zone)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
QUIET = QuietHours(time(21, 0), time(8, 0))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ny(*args) -> datetime:
    """A New York wall time that exists once, as a UTC instant."""
    return datetime(*args, tzinfo=NY).astimezone(UTC)


@pytest.mark.parametrize("text, days, elapsed", [
    ("-7d", -7, timedelta(0)),
    ("+1d", 1, timedelta(0)),
    ("1d", 1, timedelta(0)),
    ("-48h", 0, timedelta(hours=-48)),
    ("-2h30m", 0, -timedelta(hours=2, minutes=30)),
    ("+30d", 30, timedelta(0)),
    ("0m", 0, timedelta(0)),
    ("+1d2h", 1, timedelta(hours=2)),
])
def test_parse_offset(text, days, elapsed):
    assert parse_offset(text) == Offset(days=days, elapsed=elapsed)


@pytest.mark.parametrize("text", ["", "-", "7", "7x", "1w", "d", "-7d-2h", "2m30h", "+-1d", "1.5h", "h1"])
def test_parse_offset_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_offset(text)
    assert repr(text) in str(info.value)


def test_offset_sign():
    assert parse_offset("-3h").negative
    assert parse_offset("-1d").negative
    assert not parse_offset("0m").negative
    assert not parse_offset("+1d").negative


@pytest.mark.parametrize("text", ["7:30", "24:00", "12:60", "noon", "0930", "9.30", ""])
def test_parse_hhmm_refuses(text):
    with pytest.raises(ValueError):
        parse_hhmm(text)


def test_parse_hhmm():
    assert parse_hhmm("07:30") == time(7, 30)
    assert parse_hhmm("23:59") == time(23, 59)


def test_zone_refuses_unknown():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        zone("Mars/Olympus")


# --- wall times across DST (SPEC 6 rule 2) ---------------------------------------------------

def test_gap_moves_forward_to_first_existing_wall_time():
    # 2027-03-14 02:30 does not exist in New York: clocks jump 02:00 EST -> 03:00 EDT.
    instant = resolve_wall(datetime(2027, 3, 14, 2, 30), NY)
    assert instant == utc(2027, 3, 14, 7, 0)
    assert instant.astimezone(NY).strftime("%H:%M %Z") == "03:00 EDT"


def test_fold_takes_the_first():
    # 2027-11-07 01:30 happens twice in New York: first in EDT (05:30Z), then EST (06:30Z).
    assert resolve_wall(datetime(2027, 11, 7, 1, 30), NY) == utc(2027, 11, 7, 5, 30)


def test_at_inside_gap_moves_forward():
    anchor = ny(2027, 3, 14, 12, 0)
    due = apply_offset(anchor, parse_offset("0m"), NY, time(2, 30))
    assert due == utc(2027, 3, 14, 7, 0)


def test_at_inside_fold_takes_first():
    anchor = ny(2027, 11, 7, 12, 0)
    assert apply_offset(anchor, parse_offset("0m"), NY, time(1, 30)) == utc(2027, 11, 7, 5, 30)


@pytest.mark.parametrize("anchor, expected", [
    (ny(2027, 3, 1, 10, 0), "2027-03-31T10:00:00-04:00"),   # EST -> EDT
    (ny(2027, 10, 20, 10, 0), "2027-11-19T10:00:00-05:00"),  # EDT -> EST
])
def test_calendar_days_keep_the_wall_time_across_dst(anchor, expected):
    assert apply_offset(anchor, parse_offset("+30d"), NY, time(10, 0)).astimezone(NY).isoformat() == expected
    assert apply_offset(anchor, parse_offset("+30d"), NY).astimezone(NY).isoformat() == expected


def test_days_are_calendar_days_hours_are_elapsed():
    session = ny(2027, 3, 14, 12, 0)  # Sunday of the spring-forward, 16:00Z
    assert apply_offset(session, parse_offset("-1d"), NY) == ny(2027, 3, 13, 12, 0)
    assert apply_offset(session, parse_offset("-24h"), NY) == ny(2027, 3, 13, 11, 0)


def test_at_applies_to_the_local_date_the_offset_lands_on():
    # 23:30 local is already the next day in UTC: the local date decides.
    session = ny(2027, 6, 10, 23, 30)
    assert apply_offset(session, parse_offset("-1d"), NY, time(17, 0)) == ny(2027, 6, 9, 17, 0)
    # -3h from 01:00 lands on the previous local day
    early = ny(2027, 6, 10, 1, 0)
    assert apply_offset(early, parse_offset("-3h"), NY, time(10, 0)) == ny(2027, 6, 9, 10, 0)


@pytest.mark.parametrize("zone_name, session_local, expected_local", [
    ("Europe/London", datetime(2027, 3, 28, 10, 0), "2027-03-27T17:00:00+00:00"),
    ("Europe/London", datetime(2027, 10, 31, 10, 0), "2027-10-30T17:00:00+01:00"),
    ("Australia/Lord_Howe", datetime(2027, 4, 4, 10, 0), "2027-04-03T17:00:00+11:00"),
    ("Australia/Lord_Howe", datetime(2027, 10, 3, 10, 0), "2027-10-02T17:00:00+10:30"),
])
def test_day_before_at_other_zones(zone_name, session_local, expected_local):
    tz = ZoneInfo(zone_name)
    session = session_local.replace(tzinfo=tz).astimezone(UTC)
    assert apply_offset(session, parse_offset("-1d"), tz, time(17, 0)).astimezone(tz).isoformat() == expected_local


# --- quiet hours (SPEC 6 rule 4) ---------------------------------------------------------------

@pytest.mark.parametrize("t, inside", [
    (time(20, 59), False), (time(21, 0), True), (time(23, 59), True), (time(0, 0), True),
    (time(7, 59), True), (time(8, 0), False), (time(12, 0), False),
])
def test_quiet_hours_are_half_open(t, inside):
    assert QUIET.contains_time(t) is inside


def test_quiet_hours_not_crossing_midnight():
    q = QuietHours(time(1, 0), time(6, 0))
    assert q.contains_time(time(1, 0)) and not q.contains_time(time(6, 0)) and not q.contains_time(time(23, 0))
    assert q.end_after(ny(2027, 6, 10, 3, 0), NY) == ny(2027, 6, 10, 6, 0)


def test_quiet_period_across_spring_forward():
    start, end = QUIET.period(ny(2027, 3, 14, 4, 0), NY)
    assert start == ny(2027, 3, 13, 21, 0) and end == ny(2027, 3, 14, 8, 0)
    assert end - start == timedelta(hours=10)  # one hour fewer that night


def test_send_window_forward_to_end():
    due = ny(2027, 6, 10, 22, 0)
    assert send_window(due, due + timedelta(hours=24), NY, QUIET, None) == ny(2027, 6, 11, 8, 0)


def test_send_window_back_before_start_when_end_is_past_expiry():
    due = ny(2027, 6, 10, 4, 30)
    assert send_window(due, ny(2027, 6, 10, 7, 30), NY, QUIET, None) == ny(2027, 6, 9, 20, 59)


def test_send_window_never_back_before_floor():
    due = ny(2027, 6, 10, 22, 30)
    assert send_window(due, ny(2027, 6, 11, 0, 30), NY, QUIET, floor=ny(2027, 6, 10, 21, 30)) is None
    assert send_window(due, ny(2027, 6, 11, 0, 30), NY, QUIET, floor=ny(2027, 6, 10, 20, 30)) == ny(2027, 6, 10, 20, 59)


def test_send_window_due_at_or_after_expiry():
    due = ny(2027, 6, 10, 12, 0)
    assert send_window(due, due, NY, QUIET, None) is None


def test_send_time_from_late():
    due = ny(2027, 6, 10, 12, 0)
    expires = due + timedelta(hours=24)
    now = ny(2027, 6, 10, 15, 0)
    assert send_time_from(now, due, expires, NY, QUIET) == now
    night = ny(2027, 6, 10, 23, 0)
    assert send_time_from(night, due, expires, NY, QUIET) == ny(2027, 6, 11, 8, 0)
    assert send_time_from(night, due, ny(2027, 6, 11, 7, 0), NY, QUIET) is None
    assert send_time_from(now, ny(2027, 6, 11, 9, 0), expires, NY, QUIET) == ny(2027, 6, 11, 9, 0)
    assert send_time_from(now, None, expires, NY, QUIET) is None
