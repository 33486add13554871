"""The delivery engine on a virtual clock, through the real dispatcher (SPEC 7)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store import outbox
from dripcare.app import enrollments
from dripcare.app import messages as staff_messages
from dripcare.app import patients
from dripcare.store import consent as consent_rows
from dripcare.store.consent import consent_in_force
from dripcare.store.db import transaction
from dripcare.store.models import ChannelState, Consent, Patient, TreatmentSession
from dripcare.domain.timing import zone

from tests.support.dispatching import (ScriptedTransport, TransportError, enroll_sample, events, fast_forward, jsonl,
                          make_dispatcher, rows)

NY = zone("America/New_York")


def local(instant: datetime):
    return instant.astimezone(NY)


def test_whole_course_sent_exactly_once_on_time(rt, tmp_path):
    enroll_sample(rt, sessions=("2027-03-09 09:30", "2027-03-11 07:30", "2027-03-15 13:00"))
    dispatcher = make_dispatcher(rt, tmp_path)
    fast_forward(dispatcher, rt.clock)
    dispatcher.close()
    everything = rows(rt.engine)
    sent = [m for m in everything if m.status == "sent"]
    assert len(sent) >= 20
    assert {m.status for m in everything} <= {"sent", "skipped"}
    lines = jsonl(tmp_path / "outbox" / "sms.jsonl") + jsonl(tmp_path / "outbox" / "email.jsonl")
    assert sorted(line["message_id"] for line in lines) == sorted(m.id for m in sent)  # exactly once
    quiet = rt.clinic.quiet_hours
    for m in sent:
        assert m.due_at <= m.sent_at < m.expires_at, m.step_id
        assert not quiet.contains(m.sent_at, NY), (m.step_id, local(m.sent_at))
        assert m.provider_id == f"file-{m.id}"


def test_outage_expires_stale_pre_session_messages_and_sends_the_rest(rt, tmp_path):
    enroll_sample(rt, sessions=("2027-03-04 10:00", "2027-03-10 10:00"))
    dispatcher = make_dispatcher(rt, tmp_path)
    fast_forward(dispatcher, rt.clock, until=datetime(2027, 3, 1, 16, 0, tzinfo=timezone.utc))
    # The worker is down for two days and more: session 1 has begun when it comes back.
    rt.clock.set(datetime(2027, 3, 4, 16, 0, tzinfo=timezone.utc))
    dispatcher.run_pass()
    with Session(rt.engine) as session:
        first_session = session.execute(sa.select(sa.func.min(TreatmentSession.id))).scalar()
    before = [m for m in rows(rt.engine) if m.session_id == first_session and m.expires_at <= rt.clock.now()
              and m.step_id in ("prep-2days", "what-to-expect", "day-of")]
    assert before and all(m.status == "expired" and m.sent_at is None for m in before)
    fast_forward(dispatcher, rt.clock)
    dispatcher.close()
    later = [m for m in rows(rt.engine) if m.due_at > datetime(2027, 3, 5, tzinfo=timezone.utc)]
    assert later and all(m.status in ("sent", "skipped") for m in later)
    sent_ids = [line["message_id"] for line in jsonl(tmp_path / "outbox" / "sms.jsonl")]
    assert not set(sent_ids) & {m.id for m in before}


def test_backlog_reaching_quiet_hours_waits_for_morning_or_expires(rt, tmp_path):
    # Integration (+1d at 18:00, expires 24h after) and day-of (-3h, expires at the session).
    enroll_sample(rt, sessions=("2027-03-09 23:30",), email=None)
    dispatcher = make_dispatcher(rt, tmp_path)
    fast_forward(dispatcher, rt.clock, until=datetime(2027, 3, 9, 19, 0, tzinfo=timezone.utc))
    # Down from 14:00 to 21:30 New York time on the session day: both are overdue at 21:30.
    rt.clock.set(datetime(2027, 3, 10, 2, 30, tzinfo=timezone.utc))
    dispatcher.run_pass()
    day_of = rows(rt.engine, step_id="day-of")[0]  # expires at the session, before morning
    assert (day_of.status, day_of.reason, day_of.sent_at) == ("expired", "quiet_hours", None)
    # Integration is due the next evening; push it into quiet hours by a backlog too.
    rt.clock.set(datetime(2027, 3, 11, 2, 30, tzinfo=timezone.utc))  # 21:30 local, the day after
    dispatcher.run_pass()
    integration = rows(rt.engine, step_id="integration")[0]
    assert integration.status == "scheduled" and integration.reason == "quiet_hours"
    assert local(integration.next_attempt_at).strftime("%H:%M") == "08:00"
    fast_forward(dispatcher, rt.clock)
    dispatcher.close()
    integration = rows(rt.engine, step_id="integration")[0]
    assert integration.status == "sent" and local(integration.sent_at).strftime("%H:%M") == "08:00"


def test_consent_revoked_between_plan_and_send_is_not_sent(rt, tmp_path):
    patient, _ = enroll_sample(rt)
    with transaction(rt.engine) as session:  # as the web process would, before any replan
        consent_rows.append(session, session.get(Patient, patient.id), "sms", False, rt.clock.now(), "sms_keyword",
                            "sms", None)
    dispatcher = make_dispatcher(rt, tmp_path)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome", channel="sms")[0]
    assert (welcome.status, welcome.reason) == ("cancelled", "opted_out")
    assert jsonl(tmp_path / "outbox" / "sms.jsonl") == []
    assert len(jsonl(tmp_path / "outbox" / "email.jsonl")) == 1


def test_session_cancelled_after_claim_is_not_sent(rt, tmp_path):
    _, enrollment = enroll_sample(rt, sessions=("2027-03-02 13:00",), email=None)
    rt.clock.set(datetime(2027, 3, 2, 15, 0, tzinfo=timezone.utc))  # 10:00 local: day-of is due
    claimed = outbox.claim_due(rt.engine, rt.clock.now(), 10, "a-worker-that-dies", ["sms"])
    assert claimed
    with Session(rt.engine) as session:
        session_id = session.execute(sa.select(TreatmentSession.id)).scalar()
    enrollments.change_session(rt, str(session_id), by="staff", action="cancel")
    rt.clock.advance(timedelta(minutes=6))  # the dead worker's lease runs out
    dispatcher = make_dispatcher(rt, tmp_path)
    dispatcher.run_pass()
    dispatcher.close()
    day_of = rows(rt.engine, step_id="day-of")[0]
    assert (day_of.status, day_of.reason) == ("cancelled", "session_cancelled")
    assert day_of.id in claimed
    assert day_of.id not in [line["message_id"] for line in jsonl(tmp_path / "outbox" / "sms.jsonl")]


def _one_sms(rt, tmp_path, answers):
    enroll_sample(rt, email=None)
    sms = ScriptedTransport("sms", answers)
    dispatcher = make_dispatcher(rt, tmp_path, transports={"sms": sms, "email": ScriptedTransport("email")})
    return sms, dispatcher


def test_retryable_answers_back_off_and_stop_at_max_attempts(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("retryable", "http:429")] * 9)
    waits = []
    for _ in range(5):
        dispatcher.run_pass()
        welcome = rows(rt.engine, step_id="welcome")[0]
        if welcome.status != "scheduled":
            break
        waits.append((welcome.next_attempt_at - rt.clock.now()).total_seconds() / 60)
        rt.clock.set(welcome.next_attempt_at)
    dispatcher.close()
    # About 2, 10, 30 minutes (+-25%); the fourth wait (60 min) would pass the 72h expiry? No: it fits.
    for wait, base in zip(waits, (2, 10, 30, 60)):
        assert base * 0.75 <= wait <= base * 1.25
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.reason, welcome.attempts) == ("failed", "max_attempts", 5)
    assert sms.sent == []


def test_retry_never_goes_past_expiry(rt, tmp_path):
    enroll_sample(rt, sessions=("2027-03-02 13:00",), email=None)
    sms = ScriptedTransport("sms", [TransportError("retryable", "twilio:20429")])
    dispatcher = make_dispatcher(rt, tmp_path, transports={"sms": sms, "email": ScriptedTransport("email")})
    for m in rows(rt.engine):
        if m.step_id != "day-of":
            staff_messages.cancel_message(rt, str(m.id), by="staff")
    # day-of is due 10:00 and expires at the session (13:00); at 12:59 a retry (2 min +-25%) cannot fit.
    rt.clock.set(datetime(2027, 3, 2, 17, 59, tzinfo=timezone.utc))
    dispatcher.run_pass()
    dispatcher.close()
    day_of = rows(rt.engine, step_id="day-of")[0]
    assert (day_of.status, day_of.reason) == ("expired", "expired")


def test_permanent_answer_fails_and_flags_the_number(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("permanent", "twilio:21211")])
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.reason) == ("failed", "twilio:21211")
    with Session(rt.engine) as session:
        assert session.execute(sa.select(Patient.phone_invalid)).scalar() is True
    pending = [m for m in rows(rt.engine) if m.id != welcome.id]
    assert pending and all((m.status, m.reason) == ("cancelled", "contact_invalid") for m in pending)


def test_carrier_opt_out_revokes_sms_consent(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("opted_out", "twilio:21610")])
    dispatcher.run_pass()
    dispatcher.close()
    with Session(rt.engine) as session:
        patient = session.execute(sa.select(Patient)).scalar()
        assert consent_in_force(session, patient)["sms"] is False
        assert session.execute(sa.select(Consent.source).order_by(Consent.id.desc())).scalars().first() == "carrier"
    others = [m for m in rows(rt.engine) if m.step_id != "welcome"]
    assert others and all((m.status, m.reason) == ("cancelled", "opted_out") for m in others)


def test_account_error_pauses_the_channel_and_leaves_the_row_untouched(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("account", "twilio:20003", "authenticate")])
    dispatcher.run_pass()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.attempts) == ("scheduled", 0)
    with Session(rt.engine) as session:
        state = session.get(ChannelState, "sms")
        assert state.paused and "20003" in state.reason
    rt.clock.advance(timedelta(minutes=5))
    dispatcher.run_pass()
    assert rows(rt.engine, step_id="welcome")[0].status == "scheduled"  # still paused
    rt.clock.advance(timedelta(minutes=6))  # resumes by itself after 10 minutes
    dispatcher.run_pass()
    dispatcher.close()
    assert rows(rt.engine, step_id="welcome")[0].status == "sent"


def test_ambiguous_answer_is_resolved_by_lookup_never_blindly_resent(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("ambiguous", "timeout", "accepted")])
    dispatcher.run_pass()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert welcome.status == "unconfirmed"
    rt.clock.advance(timedelta(minutes=3))
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert welcome.status == "sent" and welcome.provider_id.startswith("SM")
    assert sms.sent == []  # found at the provider: not sent a second time


def test_ambiguous_not_found_goes_back_after_the_grace(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("ambiguous", "http:502")])
    dispatcher.run_pass()
    rt.clock.advance(timedelta(minutes=3))
    dispatcher.run_pass()
    assert rows(rt.engine, step_id="welcome")[0].status == "unconfirmed"  # still within the grace
    rt.clock.advance(timedelta(minutes=8))
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert welcome.status == "sent" and len(sms.sent) == 1
    assert "recovered" in events(rt.engine, welcome.id)


def test_template_error_retries_until_fixed(rt, tmp_path):
    template = tmp_path / "clinic/messages/ketamine-iv/welcome.sms.j2"
    good = template.read_text()
    template.write_text("Hi {{ patient.nickname }}")
    sms, dispatcher = _one_sms(rt, tmp_path, [])
    dispatcher.run_pass()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.reason) == ("scheduled", "template_error")
    assert sms.sent == []
    template.write_text(good)
    rt.templates = type(rt.templates)(tmp_path / "clinic/messages", rt.clinic)  # a new process
    rt.clock.set(welcome.next_attempt_at)
    dispatcher.run_pass()
    dispatcher.close()
    assert rows(rt.engine, step_id="welcome")[0].status == "sent"


def test_footer_on_first_sms_of_enrollment_and_again_after_start(rt, tmp_path):
    patient, _ = enroll_sample(rt, email=None)
    sms = ScriptedTransport("sms")
    dispatcher = make_dispatcher(rt, tmp_path, transports={"sms": sms, "email": ScriptedTransport("email")})
    fast_forward(dispatcher, rt.clock, until=datetime(2027, 3, 8, 23, 0, tzinfo=timezone.utc))
    footer = rt.clinic.sms_footer
    assert [footer in out.body for out in sms.sent] == [True] + [False] * (len(sms.sent) - 1)
    patients.set_consent(rt, str(patient.id), "sms", False, source="sms_keyword", by="sms")
    patients.set_consent(rt, str(patient.id), "sms", True, source="sms_keyword", by="sms")
    count = len(sms.sent)
    fast_forward(dispatcher, rt.clock, until=datetime(2027, 3, 10, 23, 0, tzinfo=timezone.utc))
    dispatcher.close()
    assert footer in sms.sent[count].body
    assert not any(footer in out.body for out in sms.sent[count + 1:])
    assert all(m.footer == (footer in (m.body or "")) for m in rows(rt.engine, channel="sms") if m.status == "sent")


def test_daily_cap_is_checked_again_at_send_time(rt, tmp_path):
    patient, _ = enroll_sample(rt, email=None)
    with transaction(rt.engine) as session:  # two SMS went out today by hand, outside the plan
        outbox.insert_planned(session, rt.clock.now(), "test", [
            dict(plan_key=f"manual-{n}", patient_id=patient.id, enrollment_id=1, step_id="welcome", channel="sms",
                 anchor_at=rt.clock.now(), due_at=rt.clock.now(), expires_at=rt.clock.now() + timedelta(hours=1),
                 status="sent", sent_at=rt.clock.now(), ever_claimed=True) for n in range(2)])
    dispatcher = make_dispatcher(rt, tmp_path)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = [m for m in rows(rt.engine, step_id="welcome") if not m.plan_key.startswith("manual")][0]
    assert (welcome.status, welcome.reason) == ("scheduled", "daily_cap")
    assert local(welcome.next_attempt_at).strftime("%H:%M") == "08:00"


def test_each_pass_makes_one_attempt_per_row_and_events_for_every_transition(rt, tmp_path):
    sms, dispatcher = _one_sms(rt, tmp_path, [TransportError("retryable", "http:429")])
    summary = dispatcher.run_pass()
    dispatcher.close()
    assert summary["retried"] == 1 and len(sms.sent) == 0
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert events(rt.engine, welcome.id) == ["planned", "claimed", "attempt", "retry"]


def test_shutdown_puts_claimed_rows_back(rt, tmp_path):
    enroll_sample(rt)
    ids = outbox.claim_due(rt.engine, rt.clock.now(), 10, "w1", ["sms", "email"])
    with transaction(rt.engine) as session:
        assert outbox.release_unattempted(session, "w1", rt.clock.now()) == len(ids) > 0
    assert all(m.status == "scheduled" for m in rows(rt.engine) if m.id in ids)
