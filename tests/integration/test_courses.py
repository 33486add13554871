"""Whole courses of the three shipped pathways through the real planner and dispatcher on a
virtual clock (issue 10): every step goes out, in order, in the patient's language, discreet
or not, after a session is rescheduled mid-course; and on a day when the daily cap forces a
choice, the integration message (the one with the crisis line) is the one that goes out."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app import enrollments, patients
from dripcare.domain.timing import apply_offset, local_day, zone
from dripcare.store.models import TreatmentSession
from tests.support.dispatching import fast_forward, make_dispatcher, rows

UTC = timezone.utc
NY = zone("America/New_York")
CAMPAIGNS = ("ketamine-iv", "esketamine-intranasal", "ketamine-at-home")
MODALITY = {"ketamine-iv": "iv", "esketamine-intranasal": "intranasal", "ketamine-at-home": "sublingual"}
LOCATION = {"ketamine-iv": "Room 2", "esketamine-intranasal": "Room 4", "ketamine-at-home": None}
# Six sessions over two weeks, across the spring-forward of 2027-03-14; the fourth moves a day.
SESSIONS = ["2027-03-08 11:30", "2027-03-10 11:30", "2027-03-12 11:30", "2027-03-15 11:30", "2027-03-17 11:30",
            "2027-03-19 11:30"]
MOVED_TO = "2027-03-16 11:30"
PEOPLE = [("en", False), ("en", True), ("es", False), ("es", True)]
FOOTER_WORD = {"en": "Reply STOP", "es": "Responda ALTO"}


def enroll(rt, campaign_id: str, sessions: list[str], people=PEOPLE) -> dict[int, tuple[str, bool]]:
    enrolled = {}
    for n, (locale, discreet) in enumerate(people):
        patient = patients.add_patient(
            rt, first_name="Maximiliano", last_name=f"Test{n}", phone=f"+1 212 555 01{40 + n}",
            email=f"p{n}@example.org", timezone="America/New_York", locale=locale, discreet=discreet,
            consent=["sms", "email"], by="test")
        enrollments.enroll(rt, str(patient.id), campaign_id, sessions, by="test", modality=MODALITY[campaign_id],
                           location=LOCATION[campaign_id])
        enrolled[patient.id] = (locale, discreet)
    return enrolled


def sessions_of(rt) -> dict[int, TreatmentSession]:
    with Session(rt.engine) as session:
        return {s.id: s for s in session.execute(sa.select(TreatmentSession)).scalars()}


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def expected(campaign, enrolled_at: datetime, starts: list[datetime]) -> dict[str, list[tuple[str, datetime | None]]]:
    """Per channel, (step, session start) in the order they fall due, from the campaign file."""
    due = defaultdict(list)
    for step in campaign.steps:
        anchors = {"enrollment": [None], "first_session": [starts[0]], "last_session": [starts[-1]],
                   "each_session": starts}[step.anchor]
        for start in anchors:
            when = apply_offset(start or enrolled_at, step.offset, NY, step.at)
            for channel in step.channels:
                due[channel].append((when, step.id, start))
    return {channel: [(s, start) for _, s, start in sorted(items, key=lambda x: x[0])] for channel, items in due.items()}


def looks_spanish(text: str) -> bool:
    words = re.findall(r"[^\W\d_]+", text.lower())
    spanish = sum(w in {"su", "le", "de", "la", "el", "que", "para", "usted", "llame", "hola"} for w in words)
    english = sum(w in {"you", "your", "the", "and", "call", "hi"} for w in words)
    return spanish > english


@pytest.mark.parametrize("campaign_id", CAMPAIGNS)
def test_a_full_course_sends_every_step_in_order_in_each_language_discreet_and_not(rt, tmp_path, campaign_id):
    rt.clock.set(datetime(2027, 2, 26, 15, 0, tzinfo=UTC))  # 10:00 in New York, ten days ahead
    enrolled_at = rt.clock.now()
    people = enroll(rt, campaign_id, SESSIONS)
    dispatcher = make_dispatcher(rt, tmp_path)
    try:
        fast_forward(dispatcher, rt.clock, until=datetime(2027, 3, 11, 12, 0, tzinfo=UTC))  # after session 2
        fourth = sorted(sessions_of(rt).values(), key=lambda s: (s.enrollment_id, s.starts_at))[3::6]
        assert len(fourth) == len(people)
        for s in fourth:
            enrollments.change_session(rt, str(s.id), at=MOVED_TO, by="test")
        fast_forward(dispatcher, rt.clock)
    finally:
        dispatcher.close()

    campaign, terms, clinic = rt.campaigns[campaign_id], rt.terms, rt.clinic
    starts = {sid: aware(s.starts_at) for sid, s in sessions_of(rt).items()}
    all_rows = rows(rt.engine)
    assert {(m.status, m.reason) for m in all_rows} == {("sent", None), ("cancelled", "rescheduled")}
    for patient_id, (locale, discreet) in people.items():
        mine = [m for m in all_rows if m.patient_id == patient_id]
        moved = [m for m in mine if m.status == "cancelled"]
        assert moved and {m.step_id for m in moved} <= {"what-to-expect", "safety-check", "day-of", "integration"}
        own_starts = sorted({starts[m.session_id] for m in mine if m.session_id})
        want = expected(campaign, enrolled_at, own_starts)
        for channel in ("sms", "email"):
            went = sorted((m for m in mine if m.channel == channel and m.status == "sent"),
                          key=lambda m: (m.sent_at, m.id))
            got = [(m.step_id, starts[m.session_id] if m.session_id else None) for m in went]
            assert got == want[channel], (campaign_id, locale, discreet, channel)
            for m in went:
                text = m.body if channel == "sms" else f"{m.subject}\n{m.body}"
                assert looks_spanish(text) == (locale == "es"), (m.step_id, text)
                if discreet:
                    shown = m.body if channel == "sms" else f"{m.subject}\n{m.body[:200]}"
                    assert terms.found(shown) == [], (m.step_id, shown)
                if m.step_id == "integration":
                    crisis = clinic.instructions["crisis_line_es"] if locale == "es" else clinic.crisis_line
                    assert crisis in m.body and clinic.emergency_number in m.body, m.body
            if channel == "sms":
                assert [FOOTER_WORD[locale] in m.body for m in went] == [True] + [False] * (len(went) - 1)


@pytest.mark.parametrize("campaign_id", CAMPAIGNS)
def test_when_the_daily_cap_forces_a_choice_the_integration_message_goes_out(rt, tmp_path, campaign_id):
    # Sessions on three days in a row: the middle day holds three SMS for a cap of two
    # (that day's reminder, the integration of the day before, the next day's preparation).
    rt.clock.set(datetime(2027, 3, 1, 15, 0, tzinfo=UTC))
    enroll(rt, campaign_id, ["2027-03-08 11:30", "2027-03-09 11:30", "2027-03-10 11:30"], people=[("en", False)])
    dispatcher = make_dispatcher(rt, tmp_path)
    try:
        fast_forward(dispatcher, rt.clock)
    finally:
        dispatcher.close()
    sms = rows(rt.engine, channel="sms")
    capped = [m for m in sms if m.reason == "daily_cap"]
    assert capped, "no day forced a choice"
    assert rt.clinic.max_per_day["sms"] == 2
    for day in {local_day(aware(m.due_at), NY) for m in capped}:
        that_day = [m for m in sms if local_day(aware(m.due_at), NY) == day]
        assert len(that_day) > 2
        integration = [m for m in that_day if m.step_id == "integration"]
        assert integration and all(m.status == "sent" for m in integration), [(m.step_id, m.status) for m in that_day]
    assert all(m.status == "sent" for m in sms if m.step_id == "integration")
    assert not [m for m in capped if m.step_id == "integration"]
