"""The pure planner, one SPEC 6 rule at a time: plain values in, planned messages out."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dripcare.domain.campaign import Campaign, Step
from dripcare.domain.planner import (EnrollmentState, PatientState, Planned, RowState, Rules, SessionState,
                              cancel_reason, plan_patient)
from dripcare.domain.timing import QuietHours, parse_offset

UTC = timezone.utc
NY_NAME = "America/New_York"
NY = ZoneInfo(NY_NAME)
QUIET = QuietHours(time(21, 0), time(8, 0))
RULES = Rules(quiet_hours=QUIET, max_per_day={"sms": 2, "email": 2})
NO_QUIET = Rules(quiet_hours=QuietHours(time(0, 0), time(0, 0)), max_per_day={"sms": 9, "email": 9})
NOW = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)  # Mon 10:00 EST


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY).astimezone(UTC)


def step(id="s", anchor="each_session", offset="0m", at=None, channels=("sms",), priority=50,
         expires=None, when="not_cancelled") -> Step:
    if isinstance(expires, str) and expires != "session_start":
        expires = parse_offset(expires).elapsed
    return Step(id=id, anchor=anchor, offset=parse_offset(offset),
                at=time.fromisoformat(at) if at else None, channels=tuple(channels),
                priority=priority, expires=expires, when=when)


def campaign(*steps: Step, course_end="last_booked") -> Campaign:
    return Campaign(id="c", name="C", channels=("sms", "email"), course_end=course_end,
                    steps=tuple(steps), digest="x")


def sess(id: int, starts_at: datetime, status="scheduled") -> SessionState:
    return SessionState(id=id, starts_at=starts_at, status=status)


def enrollment(camp: Campaign, *sessions: SessionState, id=1, status="active", enrolled_at=NOW,
               completed=False) -> EnrollmentState:
    return EnrollmentState(id=id, campaign=camp, status=status, enrolled_at=enrolled_at, completed=completed,
                           sessions=tuple(sessions))


def patient(tz=NY_NAME, sms=True, email=True, consent_sms=True, consent_email=True,
            invalid_sms=False, invalid_email=False) -> PatientState:
    return PatientState(timezone=tz,
                        reachable={"sms": sms and not invalid_sms, "email": email and not invalid_email},
                        consented={"sms": consent_sms and sms, "email": consent_email and email})


def plan(enrollments, rows=(), rules=RULES, now=NOW, pat=None) -> list[Planned]:
    if isinstance(enrollments, EnrollmentState):
        enrollments = [enrollments]
    result = plan_patient(pat or patient(), list(enrollments), list(rows), rules, now)
    return sorted(result.values(), key=lambda p: (p.due_at, p.key))


def only(planned: list[Planned], **match) -> Planned:
    found = [p for p in planned if all(getattr(p, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, planned)
    return found[0]


def row_of(p: Planned, id: int, status: str | None = None, reason=None, sent_at=None, ever_claimed=None) -> RowState:
    status = status or p.status
    went = status in ("sending", "unconfirmed", "sent", "delivered", "undelivered", "failed", "expired")
    return RowState(id=id, key=p.key, enrollment_id=p.enrollment_id, step_id=p.step_id, channel=p.channel,
                    session_id=p.session_id, anchor_at=p.anchor_at, status=status,
                    reason=reason if reason is not None else (p.reason if status == p.status else None),
                    due_at=p.due_at, expires_at=p.expires_at,
                    sent_at=sent_at or (p.due_at if status in ("sent", "delivered") else None),
                    ever_claimed=went if ever_claimed is None else ever_claimed)


def local(instant: datetime) -> str:
    return instant.astimezone(NY).isoformat()


# --- rule 1: anchors ---------------------------------------------------------------------------

def test_enrollment_anchor_once_at_enrolled_at():
    e = enrollment(campaign(step("welcome", "enrollment", "0m")),
                   sess(1, ny(2027, 3, 10, 10)), sess(2, ny(2027, 3, 12, 10)))
    p = only(plan(e), step_id="welcome")
    assert p.session_id is None and p.anchor_at == NOW and p.due_at == NOW


def test_first_last_and_each_session_anchors():
    c = campaign(step("first", "first_session", "-1d", at="10:00"),
                 step("last", "last_session", "+1d", at="10:00"),
                 step("each", "each_session", "+1h"))
    s1, s2, s3 = sess(11, ny(2027, 3, 9, 10)), sess(12, ny(2027, 3, 5, 10)), sess(13, ny(2027, 3, 7, 10))
    planned = plan(enrollment(c, s1, s2, s3), rules=NO_QUIET)
    assert only(planned, step_id="first").session_id == 12
    assert only(planned, step_id="last").session_id == 11
    assert sorted(p.session_id for p in planned if p.step_id == "each") == [11, 12, 13]


def test_cancelled_and_no_show_sessions_do_not_count_as_first_or_last():
    c = campaign(step("first", "first_session", "-1d", at="10:00"),
                 step("last", "last_session", "+1d", at="10:00"),
                 step("each", "each_session", "+1h"))
    s = [sess(1, ny(2027, 3, 5, 10), "cancelled"), sess(2, ny(2027, 3, 6, 10), "completed"),
         sess(3, ny(2027, 3, 8, 10)), sess(4, ny(2027, 3, 9, 10), "no_show")]
    planned = plan(enrollment(c, *s), rules=NO_QUIET)
    assert only(planned, step_id="first").session_id == 2
    assert only(planned, step_id="last").session_id == 3
    assert sorted(p.session_id for p in planned if p.step_id == "each") == [2, 3]


def test_no_sessions_plans_only_enrollment_steps():
    c = campaign(step("welcome", "enrollment", "0m"), step("first", "first_session", "-1d"),
                 step("each", "each_session", "-1d"))
    assert [p.step_id for p in plan(enrollment(c))] == ["welcome"]


# --- rule 2: due time, DST -----------------------------------------------------------------------

def test_due_is_anchor_plus_offset():
    e = enrollment(campaign(step("before", offset="-2h30m", priority=60), step("after", offset="+90m")),
                   sess(1, ny(2027, 6, 10, 14, 0)))
    planned = plan(e)
    assert only(planned, step_id="before").due_at == ny(2027, 6, 10, 11, 30)
    assert only(planned, step_id="after").due_at == ny(2027, 6, 10, 15, 30)


@pytest.mark.parametrize("sunday, saturday_utc, offset", [
    # spring forward: Saturday is still EST (-05:00), the session is EDT (-04:00)
    (datetime(2027, 3, 14, 10, 0), datetime(2027, 3, 13, 22, 0, tzinfo=UTC), "-05:00"),
    # fall back: Saturday is still EDT (-04:00), the session is EST (-05:00)
    (datetime(2027, 11, 7, 10, 0), datetime(2027, 11, 6, 21, 0, tzinfo=UTC), "-04:00"),
])
def test_day_before_at_across_a_dst_weekend(sunday, saturday_utc, offset):
    session_at = sunday.replace(tzinfo=NY).astimezone(UTC)
    e = enrollment(campaign(step("what-to-expect", offset="-1d", at="17:00")), sess(1, session_at))
    p = only(plan(e), step_id="what-to-expect")
    assert p.due_at == saturday_utc
    assert local(p.due_at) == f"{sunday.date() - timedelta(days=1)}T17:00:00{offset}"
    assert p.expires_at == session_at


def test_early_sunday_session_on_spring_forward_day_before():
    # 03:30 on the spring-forward Sunday: the day before is 03:30 EST, 23 elapsed hours earlier.
    session_at = ny(2027, 3, 14, 3, 30)
    e = enrollment(campaign(step("cal", offset="-1d"), step("el", offset="-24h")), sess(1, session_at))
    planned = plan(e, rules=NO_QUIET)
    assert local(only(planned, step_id="cal").due_at) == "2027-03-13T03:30:00-05:00"
    assert local(only(planned, step_id="el").due_at) == "2027-03-13T02:30:00-05:00"


def test_at_inside_dst_gap_moves_forward():
    e = enrollment(campaign(step("gap", offset="0m", at="02:30")), sess(1, ny(2027, 3, 14, 12, 0)))
    p = only(plan(e, rules=NO_QUIET), step_id="gap")
    assert local(p.due_at) == "2027-03-14T03:00:00-04:00"


def test_at_inside_dst_fold_takes_first():
    e = enrollment(campaign(step("fold", offset="0m", at="01:30")), sess(1, ny(2027, 11, 7, 12, 0)))
    p = only(plan(e, rules=NO_QUIET), step_id="fold")
    assert p.due_at == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)
    assert local(p.due_at) == "2027-11-07T01:30:00-04:00"


def test_plus_30_days_at_10_stays_10_local_across_dst():
    e = enrollment(campaign(step("month", "last_session", "+30d", at="10:00")), sess(1, ny(2027, 3, 2, 14, 0)))
    p = only(plan(e), step_id="month")
    assert local(p.due_at) == "2027-04-01T10:00:00-04:00"
    assert p.expires_at == p.due_at + timedelta(hours=24)


# --- rule 3: expiry --------------------------------------------------------------------------------

def test_default_expiry_is_session_start_for_steps_due_before_their_session():
    first = ny(2027, 3, 10, 10)
    c = campaign(step("prep", "first_session", "-7d", at="10:00"),
                 step("eve", "each_session", "-1d", at="17:00"),
                 step("lastprep", "last_session", "-2h"))
    planned = plan(enrollment(c, sess(1, first), sess(2, ny(2027, 3, 12, 10))))
    assert only(planned, step_id="prep").expires_at == first
    assert only(planned, step_id="eve", session_id=2).expires_at == ny(2027, 3, 12, 10)
    assert only(planned, step_id="lastprep").expires_at == ny(2027, 3, 12, 10)


def test_default_expiry_is_due_plus_24h_otherwise():
    c = campaign(step("welcome", "enrollment", "0m"), step("after", "each_session", "+1d", at="18:00"),
                 step("at-start", "each_session", "0m"))
    planned = plan(enrollment(c, sess(1, ny(2027, 3, 10, 10))))
    assert only(planned, step_id="welcome").expires_at == NOW + timedelta(hours=24)
    after = only(planned, step_id="after")
    assert after.expires_at == ny(2027, 3, 11, 18) + timedelta(hours=24)
    assert only(planned, step_id="at-start").expires_at == ny(2027, 3, 10, 10) + timedelta(hours=24)


def test_explicit_duration_counts_from_the_unshifted_due():
    # -3h from a 07:30 session is 04:30 (quiet); it moves to 08:00 but expiry is 04:30 + 12h.
    e = enrollment(campaign(step("early", offset="-3h", expires="12h")), sess(1, ny(2027, 3, 10, 7, 30)))
    p = only(plan(e), step_id="early")
    assert p.due_at == ny(2027, 3, 10, 8, 0)
    assert p.expires_at == ny(2027, 3, 10, 16, 30)


def test_explicit_session_start_expiry():
    e = enrollment(campaign(step("x", "first_session", "-1d", expires="session_start")),
                   sess(1, ny(2027, 3, 10, 11)))
    assert only(plan(e), step_id="x").expires_at == ny(2027, 3, 10, 11)


def test_only_window_past_expiry_is_skipped_no_send_window():
    # An "after" step that expires at session start can never be sent.
    e = enrollment(campaign(step("after", offset="+1h", expires="session_start")), sess(1, ny(2027, 3, 10, 11)))
    p = only(plan(e), step_id="after")
    assert (p.status, p.reason) == ("skipped", "no_send_window")


# --- rule 4: quiet hours ---------------------------------------------------------------------------

def test_due_in_quiet_hours_moves_forward_to_end():
    e = enrollment(campaign(step("eve", offset="+12h")), sess(1, ny(2027, 3, 10, 10)))  # 22:00
    p = only(plan(e), step_id="eve")
    assert p.due_at == ny(2027, 3, 11, 8, 0) and p.status == "scheduled"
    assert p.expires_at == ny(2027, 3, 10, 22) + timedelta(hours=24)


def test_730_session_day_of_reminder_moves_back_to_previous_evening():
    # -3h from 07:30 is 04:30 (quiet); 08:00 is after the session, so it goes out at 20:59 the evening before.
    session_at = ny(2027, 3, 10, 7, 30)
    e = enrollment(campaign(step("day-of", offset="-3h")), sess(1, session_at))
    p = only(plan(e), step_id="day-of")
    assert local(p.due_at) == "2027-03-09T20:59:00-05:00"
    assert (p.status, p.expires_at) == ("scheduled", session_at)


def test_730_session_on_spring_forward_sunday_moves_back_to_saturday_evening():
    session_at = ny(2027, 3, 14, 7, 30)
    p = only(plan(enrollment(campaign(step("day-of", offset="-3h")), sess(1, session_at))), step_id="day-of")
    assert local(p.due_at) == "2027-03-13T20:59:00-05:00"


def test_positive_offset_never_moved_back_before_its_anchor():
    # A 21:30 session, +1h -> 22:30 (quiet), expiring 00:30: 08:00 is too late and 20:59 is
    # before the session: nothing fits.
    e = enrollment(campaign(step("after", offset="+1h", expires="2h")), sess(1, ny(2027, 3, 10, 21, 30)))
    p = only(plan(e), step_id="after")
    assert (p.status, p.reason) == ("skipped", "no_send_window")


def test_positive_offset_may_move_back_when_still_after_anchor():
    e = enrollment(campaign(step("after", offset="+1h", expires="2h")), sess(1, ny(2027, 3, 10, 20, 30)))
    p = only(plan(e), step_id="after")
    assert local(p.due_at) == "2027-03-10T20:59:00-05:00"
    assert p.due_at >= ny(2027, 3, 10, 20, 30)


def test_no_window_after_now_is_skipped():
    # Enrolled at 22:00 the evening before a 07:30 session: 20:59 has passed and 08:00 is too late.
    now = ny(2027, 3, 9, 22, 0)
    e = enrollment(campaign(step("day-of", offset="-3h")), sess(1, ny(2027, 3, 10, 7, 30)), enrolled_at=now)
    p = only(plan(e, now=now), step_id="day-of")
    assert (p.status, p.reason) == ("skipped", "no_send_window")


def test_quiet_hours_in_other_zone():
    # Kolkata (+05:30, no DST): a 07:00 session's -1h reminder (06:00, quiet) goes back to 20:59.
    tz = ZoneInfo("Asia/Kolkata")
    session_at = datetime(2027, 3, 10, 7, 0, tzinfo=tz).astimezone(UTC)
    p = only(plan(enrollment(campaign(step("r", offset="-1h")), sess(1, session_at)),
                  pat=patient(tz="Asia/Kolkata")), step_id="r")
    assert p.due_at.astimezone(tz).isoformat() == "2027-03-09T20:59:00+05:30"


# --- rule 5: late enrollment ------------------------------------------------------------------------

def test_late_enrollment_goes_out_now():
    # prep due a week before a session 3 days away: past due, not expired -> now.
    e = enrollment(campaign(step("prep", "first_session", "-7d", at="10:00")), sess(1, ny(2027, 3, 4, 10)))
    p = only(plan(e), step_id="prep")
    assert (p.status, p.due_at, p.expires_at) == ("scheduled", NOW, ny(2027, 3, 4, 10))


def test_late_enrollment_in_quiet_hours_waits_for_their_end():
    now = ny(2027, 3, 1, 23, 0)
    e = enrollment(campaign(step("prep", "first_session", "-7d", at="10:00")), sess(1, ny(2027, 3, 4, 10)),
                   enrolled_at=now)
    p = only(plan(e, now=now), step_id="prep")
    assert p.due_at == ny(2027, 3, 2, 8, 0)


def test_late_and_expired_is_skipped():
    e = enrollment(campaign(step("prep", "first_session", "-7d", at="10:00")), sess(1, ny(2027, 3, 1, 9)))
    p = only(plan(e), step_id="prep")
    assert (p.status, p.reason) == ("skipped", "no_send_window")


def test_planning_never_rejudges_a_scheduled_row_against_now():
    e = enrollment(campaign(step("eve", offset="-1d", at="17:00")), sess(1, ny(2027, 3, 10, 10)))
    first = only(plan(e), step_id="eve")
    row = row_of(first, 1)
    later = ny(2027, 3, 9, 19, 0)  # after due, the dispatcher has not run yet
    again = only(plan(e, rows=[row], now=later), step_id="eve")
    assert (again.status, again.due_at, again.expires_at) == ("scheduled", first.due_at, first.expires_at)
    # A late row planned "now" keeps its time when planned again later.
    late = only(plan(e, now=later), step_id="eve")
    assert late.due_at == later
    assert only(plan(e, rows=[row_of(late, 1)], now=later + timedelta(minutes=5)), step_id="eve").due_at == later


# --- rule 6: daily cap ------------------------------------------------------------------------------

def three_on_one_day():
    return campaign(step("low", offset="-4h", priority=40), step("high", offset="-2h", priority=90),
                    step("mid", offset="-6h", priority=60))


def test_daily_cap_skips_lowest_priority():
    planned = plan(enrollment(three_on_one_day(), sess(1, ny(2027, 3, 10, 18))))
    assert {p.step_id: (p.status, p.reason) for p in planned} == {
        "high": ("scheduled", None), "mid": ("scheduled", None), "low": ("skipped", "daily_cap")}


def test_daily_cap_tie_skips_the_latest():
    c = campaign(step("a", offset="-6h"), step("b", offset="-4h"), step("c", offset="-2h"))
    planned = plan(enrollment(c, sess(1, ny(2027, 3, 10, 18))))
    assert [p.step_id for p in planned if p.reason == "daily_cap"] == ["c"]


def test_daily_cap_counts_messages_already_sent_that_day():
    c = three_on_one_day()
    e = enrollment(c, sess(1, ny(2027, 3, 10, 18)))
    sent_row = RowState(id=99, key="9:other:-:sms:x", enrollment_id=9, step_id="other", channel="sms",
                        session_id=None, anchor_at=NOW, status="sent", reason=None,
                        due_at=ny(2027, 3, 10, 9), expires_at=ny(2027, 3, 11, 9),
                        sent_at=ny(2027, 3, 10, 9), ever_claimed=True)
    planned = plan(e, rows=[sent_row])
    assert [p.step_id for p in planned if p.status == "scheduled"] == ["high"]
    # Sent on another local day (20:30 the evening before is already the 10th in UTC): does not count.
    other_day = replace(sent_row, sent_at=ny(2027, 3, 9, 20, 30), due_at=ny(2027, 3, 9, 20, 30))
    assert len([p for p in plan(e, rows=[other_day]) if p.status == "scheduled"]) == 2


def test_daily_cap_is_per_channel_and_uses_local_day_after_quiet_shift():
    c = campaign(step("a", offset="-6h", channels=("sms", "email")), step("b", offset="-4h", channels=("sms", "email")),
                 step("c", offset="-2h", channels=("sms", "email")),
                 step("night", offset="+5h", channels=("sms",)))  # 23:00 -> 08:00 next day
    planned = plan(enrollment(c, sess(1, ny(2027, 3, 10, 18))))
    for channel in ("sms", "email"):
        assert len([p for p in planned if p.channel == channel and p.step_id in "abc" and p.status == "scheduled"]) == 2
    night = only(planned, step_id="night")
    assert night.status == "scheduled" and night.due_at == ny(2027, 3, 11, 8)


def test_daily_cap_across_enrollments():
    c1 = campaign(step("a", offset="-6h", priority=70), step("b", offset="-4h", priority=70))
    c2 = campaign(step("z", offset="-2h", priority=60))
    e1 = enrollment(c1, sess(1, ny(2027, 3, 10, 18)), id=1)
    e2 = enrollment(c2, sess(2, ny(2027, 3, 10, 19)), id=2)
    planned = plan([e1, e2])
    assert only(planned, step_id="z").reason == "daily_cap"


def test_daily_cap_planned_again_when_room_appears():
    c = three_on_one_day()
    s = sess(1, ny(2027, 3, 10, 18))
    planned = plan(enrollment(c, s))
    rows = [row_of(p, i) for i, p in enumerate(planned, 1)]
    # Another session that same day is gone and "high" was removed from the campaign:
    fewer = campaign(*(st for st in c.steps if st.id != "high"))
    replanned = plan(enrollment(fewer, s), rows=[r for r in rows if r.step_id != "high"])
    assert only(replanned, step_id="low").status == "scheduled"


# --- rule 7: channels -------------------------------------------------------------------------------

def test_channels_need_contact_and_consent():
    c = campaign(step("w", "enrollment", "0m", channels=("sms", "email")))
    assert {p.channel for p in plan(enrollment(c))} == {"sms", "email"}
    assert {p.channel for p in plan(enrollment(c), pat=patient(sms=False))} == {"email"}
    assert {p.channel for p in plan(enrollment(c), pat=patient(consent_email=False))} == {"sms"}
    assert {p.channel for p in plan(enrollment(c), pat=patient(invalid_sms=True))} == {"email"}
    assert plan(enrollment(c), pat=patient(consent_sms=False, consent_email=False)) == []


def test_step_channels_subset():
    c = campaign(step("w", "enrollment", "0m", channels=("email",)))
    assert [p.channel for p in plan(enrollment(c))] == ["email"]


def test_cancel_reason_for_revoked_consent_and_invalid_contact():
    c = campaign(step("w", "enrollment", "0m", channels=("sms",)))
    e = enrollment(c)
    row = row_of(only(plan(e), step_id="w"), 1)
    assert cancel_reason(row, e, patient(consent_sms=False)) == "opted_out"
    assert cancel_reason(row, e, patient(invalid_sms=True)) == "contact_invalid"


def test_consent_granted_again_reopens_the_same_key():
    c = campaign(step("w", "enrollment", "0m", channels=("sms",)))
    e = enrollment(c)
    p = only(plan(e), step_id="w")
    cancelled = row_of(p, 1, status="cancelled", reason="opted_out")
    again = only(plan(e, rows=[cancelled]), step_id="w")
    assert (again.key, again.status) == (p.key, "scheduled")


# --- rule 8: reschedule --------------------------------------------------------------------------------

def test_reschedule_plans_new_anchor_and_cancels_old_pending_rows():
    c = campaign(step("eve", offset="-1d", at="17:00"))
    old = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    rows = [row_of(p, i) for i, p in enumerate(plan(old), 1)]
    moved = enrollment(c, sess(1, ny(2027, 3, 12, 10)))
    planned = plan(moved, rows=rows)
    assert only(planned, step_id="eve").due_at == ny(2027, 3, 11, 17)
    assert rows[0].key not in {p.key for p in planned}
    assert cancel_reason(rows[0], moved, patient()) == "rescheduled"


def test_once_only_steps_that_went_out_are_never_planned_again():
    c = campaign(step("welcome", "enrollment", "0m"), step("first", "first_session", "-2d", at="10:00"),
                 step("last", "last_session", "+1d", at="11:00"), step("each", "each_session", "-1d", at="17:00"))
    s1, s2 = sess(1, ny(2027, 3, 10, 10)), sess(2, ny(2027, 3, 12, 10))
    e = enrollment(c, s1, s2)
    rows = [row_of(p, i, status="sent") for i, p in enumerate(plan(e), 1)]
    # Both sessions move a week later: anchors for first/last/each all move.
    later = enrollment(c, sess(1, ny(2027, 3, 17, 10)), sess(2, ny(2027, 3, 19, 10)))
    planned = plan(later, rows=rows, now=ny(2027, 3, 13, 9))
    assert {p.step_id for p in planned} == {"each"}
    assert sorted(p.due_at for p in planned) == [ny(2027, 3, 16, 17), ny(2027, 3, 18, 17)]


@pytest.mark.parametrize("status", ["sending", "unconfirmed", "sent", "delivered", "undelivered"])
def test_once_only_done_by_any_row_that_went_out(status):
    c = campaign(step("first", "first_session", "-2d", at="10:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    rows = [row_of(only(plan(e), step_id="first"), 1, status=status)]
    assert plan(enrollment(c, sess(1, ny(2027, 3, 20, 10))), rows=rows) == []


def test_once_only_step_not_sent_follows_its_anchor():
    c = campaign(step("first", "first_session", "-2d", at="10:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    rows = [row_of(only(plan(e), step_id="first"), 1)]
    p = only(plan(enrollment(c, sess(1, ny(2027, 3, 20, 10))), rows=rows), step_id="first")
    assert p.due_at == ny(2027, 3, 18, 10)


def test_moving_back_to_the_old_time_reopens_the_old_row():
    c = campaign(step("eve", offset="-1d", at="17:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    p = only(plan(e), step_id="eve")
    again = only(plan(e, rows=[row_of(p, 1, status="cancelled", reason="rescheduled")]), step_id="eve")
    assert (again.key, again.status, again.due_at) == (p.key, "scheduled", p.due_at)


# --- rule 9: cancel, no-show, pause, withdraw, complete --------------------------------------------

@pytest.mark.parametrize("status", ["paused", "withdrawn"])
def test_paused_and_withdrawn_plan_nothing(status):
    c = campaign(step("welcome", "enrollment", "0m"), step("each", offset="-1d", at="17:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    rows = [row_of(p, i) for i, p in enumerate(plan(e), 1)]
    stopped = replace(e, status=status)
    assert plan(stopped, rows=rows) == []
    assert {cancel_reason(r, stopped, patient()) for r in rows} == {status}


def test_resume_plans_the_same_keys_again():
    c = campaign(step("each", offset="-1d", at="17:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    p = only(plan(e), step_id="each")
    rows = [row_of(p, 1, status="cancelled", reason="paused")]
    assert only(plan(e, rows=rows), step_id="each").key == p.key


@pytest.mark.parametrize("status, reason", [("cancelled", "session_cancelled"), ("no_show", "no_show")])
def test_cancelled_and_no_show_sessions(status, reason):
    c = campaign(step("each", offset="-1d", at="17:00"), step("after", offset="+1d", at="18:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)), sess(2, ny(2027, 3, 12, 10)))
    rows = [row_of(p, i) for i, p in enumerate(plan(e), 1)]
    changed = enrollment(c, sess(1, ny(2027, 3, 10, 10), status), sess(2, ny(2027, 3, 12, 10)))
    planned = plan(changed, rows=rows)
    assert {p.session_id for p in planned} == {2}
    gone = [r for r in rows if r.session_id == 1]
    assert len(gone) == 2 and {cancel_reason(r, changed, patient()) for r in gone} == {reason}


def test_withdrawn_when_enrollment_is_missing():
    c = campaign(step("welcome", "enrollment", "0m"))
    row = row_of(only(plan(enrollment(c)), step_id="welcome"), 1)
    assert cancel_reason(row, None, patient()) == "withdrawn"


def test_removed_step_reason():
    c = campaign(step("welcome", "enrollment", "0m"), step("other", "enrollment", "+1h"))
    e = enrollment(c)
    row = row_of(only(plan(e), step_id="other"), 1)
    trimmed = replace(e, campaign=campaign(step("welcome", "enrollment", "0m")))
    assert plan(trimmed, rows=[row])[0].step_id == "welcome"
    assert cancel_reason(row, trimmed, patient()) == "step_removed"


def test_course_end_on_complete_waits_for_completion():
    c = campaign(step("done", "last_session", "+2d", at="11:00"), course_end="on_complete")
    s = [sess(1, ny(2027, 3, 10, 10), "completed"), sess(2, ny(2027, 3, 12, 10), "completed")]
    assert plan(enrollment(c, *s)) == []
    planned = plan(enrollment(c, *s, status="completed", completed=True), now=ny(2027, 3, 12, 12))
    p = only(planned, step_id="done")
    assert p.session_id == 2 and p.due_at == ny(2027, 3, 14, 11)


def test_last_booked_follows_the_latest_booked_session():
    c = campaign(step("done", "last_session", "+2d", at="11:00"))
    s1 = sess(1, ny(2027, 3, 10, 10))
    p1 = only(plan(enrollment(c, s1)), step_id="done")
    p2 = only(plan(enrollment(c, s1, sess(2, ny(2027, 3, 20, 10))), rows=[row_of(p1, 1)]), step_id="done")
    assert (p1.session_id, p2.session_id) == (1, 2)


def test_completed_enrollment_still_plans():
    c = campaign(step("after", offset="+1d", at="18:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10), "completed"), status="completed", completed=True)
    assert only(plan(e), step_id="after").status == "scheduled"


def test_when_completed_waits_for_the_session_to_be_completed():
    c = campaign(step("reflect", offset="+1d", at="18:00", when="completed"))
    assert plan(enrollment(c, sess(1, ny(2027, 3, 10, 10)))) == []
    p = only(plan(enrollment(c, sess(1, ny(2027, 3, 10, 10), "completed"))), step_id="reflect")
    assert p.due_at == ny(2027, 3, 11, 18)


def test_campaign_gone_plans_nothing_and_reason_is_step_removed():
    c = campaign(step("welcome", "enrollment", "0m"))
    e = enrollment(c)
    row = row_of(only(plan(e), step_id="welcome"), 1)
    gone = replace(e, campaign=None)
    assert plan(gone, rows=[row]) == []
    assert cancel_reason(row, gone, patient()) == "step_removed"


# --- rule 10: rows planning does not own ---------------------------------------------------------------

@pytest.mark.parametrize("status", ["sending", "sent", "failed", "expired", "scheduled"])
def test_ever_claimed_rows_are_left_alone(status):
    c = campaign(step("each", offset="-1d", at="17:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    p = only(plan(e), step_id="each")
    row = row_of(p, 1, status=status, ever_claimed=True)
    assert not row.belongs_to_planning
    assert plan(e, rows=[row]) == []


def test_staff_cancelled_row_stays_cancelled():
    c = campaign(step("each", offset="-1d", at="17:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 10, 10)))
    row = row_of(only(plan(e), step_id="each"), 1, status="cancelled", reason="staff")
    assert not row.belongs_to_planning
    assert plan(e, rows=[row]) == []


def test_plan_is_a_fixed_point():
    c = campaign(step("welcome", "enrollment", "0m", channels=("sms", "email")),
                 step("prep", "first_session", "-7d", at="10:00", channels=("email",)),
                 step("eve", offset="-1d", at="17:00", channels=("sms", "email")),
                 step("day-of", offset="-3h", priority=90),
                 step("after", offset="+1d", at="18:00"))
    e = enrollment(c, sess(1, ny(2027, 3, 4, 7, 30)), sess(2, ny(2027, 3, 6, 10)), sess(3, ny(2027, 3, 14, 7, 30)))
    first = plan(e)
    rows = [row_of(p, i) for i, p in enumerate(first, 1)]
    assert plan(e, rows=rows) == first
