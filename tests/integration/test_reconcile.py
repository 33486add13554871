"""Reconcile on a real SQLite file: inserts, moves, cancels, skips and reopens with the reasons
of SPEC 6 and a message_event for each; rows planning does not own are never touched."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app import enrollments
from dripcare.app import messages as staff_messages
from dripcare.app import patients
from dripcare.domain.campaign import Campaign
from dripcare.store.db import transaction
from dripcare.store.models import Message, MessageEvent, Patient, TreatmentSession
from dripcare.app.reconcile import reconcile_patient
from dripcare.domain.timing import parse_hhmm

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
SESSIONS = ["2027-03-10 09:00", "2027-03-12 09:00", "2027-03-17 13:00"]


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY).astimezone(UTC)


def add_patient(rt, consent=("sms", "email"), **extra) -> int:
    values = dict(first_name="Ada", last_name="Moss", phone="+1 780 555 0123", email="ada@example.org",
                  timezone="America/New_York", consent=list(consent), by="tester")
    values.update(extra)
    return patients.add_patient(rt, **values).id


def enrolled(rt, sessions=SESSIONS) -> tuple[int, int]:
    pid = add_patient(rt)
    enrollment = enrollments.enroll(rt, str(pid), "ketamine-iv", list(sessions), by="tester")
    return pid, enrollment.id


def rows(rt, pid: int | None = None) -> list[Message]:
    with Session(rt.engine) as session:
        query = sa.select(Message).order_by(Message.id)
        if pid is not None:
            query = query.where(Message.patient_id == pid)
        return list(session.execute(query).scalars())


def by_id(rt) -> dict[int, Message]:
    return {m.id: m for m in rows(rt)}


def events(rt, message_id: int | None = None) -> list[MessageEvent]:
    with Session(rt.engine) as session:
        query = sa.select(MessageEvent).order_by(MessageEvent.id)
        if message_id is not None:
            query = query.where(MessageEvent.message_id == message_id)
        return list(session.execute(query).scalars())


def snapshot(rt) -> list[tuple]:
    return [(m.id, m.plan_key, m.status, m.reason, m.due_at, m.expires_at, m.updated_at) for m in rows(rt)]


def reconcile(rt, pid: int, campaigns=None, by="tester"):
    with transaction(rt.engine) as session:
        patient = session.get(Patient, pid)
        return reconcile_patient(session, patient, rt.clinic, campaigns or rt.campaigns, rt.clock.now(), by)


def session_ids(rt, pid: int) -> list[int]:
    with Session(rt.engine) as session:
        return list(session.execute(sa.text(
            "SELECT s.id FROM treatment_session s JOIN enrollment e ON e.id = s.enrollment_id "
            "WHERE e.patient_id = :p ORDER BY s.starts_at"), {"p": pid}).scalars())


def mark(rt, message_id: int, **values) -> None:
    with transaction(rt.engine) as session:
        session.execute(sa.update(Message).where(Message.id == message_id).values(**values))


def mark_sent(rt, message_id: int) -> None:
    mark(rt, message_id, status="sent", ever_claimed=True, sent_at=rt.clock.now(), attempts=1,
         provider_id=f"test-{message_id}")


# --- insert ------------------------------------------------------------------------------------------

def test_enroll_inserts_rows_each_with_a_planned_event(rt):
    pid, _ = enrolled(rt)
    messages = rows(rt, pid)
    assert messages and all(m.status in ("scheduled", "skipped") for m in messages)
    for m in messages:
        evs = events(rt, m.id)
        assert [(e.kind, e.status, e.reason) for e in evs] == [
            ("planned" if m.status == "scheduled" else "skipped", m.status, m.reason)]
        assert evs[0].by == "tester"
    # one row per (step, session, channel) of the ketamine-iv campaign
    steps = {(m.step_id, m.session_id, m.channel) for m in messages}
    assert len(steps) == len(messages)
    sids = session_ids(rt, pid)
    assert {(s, c) for (st, s, c) in steps if st == "day-of"} == {(sid, "sms") for sid in sids}
    assert {m.session_id for m in messages if m.step_id == "welcome"} == {None}
    assert {m.session_id for m in messages if m.step_id in ("prep-week", "prep-2days")} == {sids[0]}
    assert {m.session_id for m in messages if m.step_id in ("course-complete", "follow-up-month")} == {sids[-1]}


def test_times_stored_in_utc_and_correct_locally(rt):
    pid, _ = enrolled(rt)
    sids = session_ids(rt, pid)
    m = {(r.step_id, r.session_id, r.channel): r for r in rows(rt, pid)}
    # 09:00 session: day-of -3h = 06:00 (quiet) -> 08:00, before the session
    assert m[("day-of", sids[0], "sms")].due_at == ny(2027, 3, 10, 8, 0)
    assert m[("what-to-expect", sids[0], "sms")].due_at == ny(2027, 3, 9, 17, 0)
    assert m[("what-to-expect", sids[0], "sms")].expires_at == ny(2027, 3, 10, 9, 0)
    # after the spring-forward: 13:00 EDT session on the 17th
    assert m[("what-to-expect", sids[2], "email")].due_at == ny(2027, 3, 16, 17, 0)
    assert m[("follow-up-month", sids[2], "email")].due_at == ny(2027, 4, 16, 10, 0)


def test_reconcile_twice_changes_nothing(rt):
    pid, _ = enrolled(rt)
    before, evs = snapshot(rt), len(events(rt))
    changes = reconcile(rt, pid)
    assert not changes and snapshot(rt) == before and len(events(rt)) == evs
    rt.clock.advance(timedelta(days=3))
    assert not reconcile(rt, pid)
    assert snapshot(rt) == before


# --- cancel, move, reopen --------------------------------------------------------------------------

def test_reschedule_cancels_old_pending_rows_and_inserts_new(rt):
    pid, _ = enrolled(rt)
    sid = session_ids(rt, pid)[1]
    old = [m for m in rows(rt, pid) if m.session_id == sid and m.status == "scheduled"]
    enrollments.change_session(rt, str(sid), at="2027-03-13 11:00", by="mover")
    now = by_id(rt)
    for m in old:
        assert (now[m.id].status, now[m.id].reason) == ("cancelled", "rescheduled")
        last = events(rt, m.id)[-1]
        assert (last.kind, last.status, last.reason, last.by) == ("cancelled", "cancelled", "rescheduled", "mover")
    new = [m for m in now.values() if m.session_id == sid and m.status == "scheduled"]
    assert {(m.step_id, m.channel) for m in new} == {(m.step_id, m.channel) for m in old}
    assert {m.anchor_at for m in new} == {ny(2027, 3, 13, 11)}
    wte = next(m for m in new if m.step_id == "what-to-expect" and m.channel == "sms")
    assert wte.due_at == ny(2027, 3, 12, 17)


def test_reschedule_back_reopens_the_same_rows(rt):
    pid, _ = enrolled(rt)
    sid = session_ids(rt, pid)[1]
    original = {m.id: m.due_at for m in rows(rt, pid) if m.session_id == sid and m.status == "scheduled"}
    enrollments.change_session(rt, str(sid), at="2027-03-13 11:00", by="t")
    enrollments.change_session(rt, str(sid), at="2027-03-12 09:00", by="t")
    now = by_id(rt)
    for mid, due in original.items():
        assert (now[mid].status, now[mid].reason, now[mid].due_at) == ("scheduled", None, due)
        assert [e.kind for e in events(rt, mid)] == ["planned", "cancelled", "reopened"]
    assert not reconcile(rt, pid)


def test_campaign_edit_moves_rows_with_a_moved_event(rt):
    pid, _ = enrolled(rt)
    campaign: Campaign = rt.campaigns["ketamine-iv"]
    edited = replace(campaign, steps=tuple(replace(s, at=parse_hhmm("16:00")) if s.id == "what-to-expect" else s
                                           for s in campaign.steps))
    before = {m.id: m for m in rows(rt, pid) if m.step_id == "what-to-expect"}
    changes = reconcile(rt, pid, {"ketamine-iv": edited})
    assert changes.counts["moved"] == len(before)
    after = by_id(rt)
    for mid, m in before.items():
        assert after[mid].due_at == m.due_at - timedelta(hours=1)
        assert after[mid].status == "scheduled"
        assert events(rt, mid)[-1].kind == "moved"


def test_step_removed_from_the_file(rt):
    pid, _ = enrolled(rt)
    campaign = rt.campaigns["ketamine-iv"]
    trimmed = replace(campaign, steps=tuple(s for s in campaign.steps if s.id != "integration"))
    reconcile(rt, pid, {"ketamine-iv": trimmed})
    gone = [m for m in rows(rt, pid) if m.step_id == "integration"]
    assert gone and {(m.status, m.reason) for m in gone} == {("cancelled", "step_removed")}


def test_session_cancel_and_no_show(rt):
    pid, _ = enrolled(rt)
    s1, s2, _s3 = session_ids(rt, pid)
    enrollments.change_session(rt, str(s2), action="cancel", by="t")
    with Session(rt.engine) as session:  # a no-show is recorded once the session has begun
        rt.clock.set(session.get(TreatmentSession, s1).starts_at + timedelta(hours=1))
    enrollments.change_session(rt, str(s1), action="no-show", by="t")
    for m in rows(rt, pid):
        if m.session_id == s2 and m.step_id in ("what-to-expect", "day-of", "integration"):
            assert (m.status, m.reason) == ("cancelled", "session_cancelled")
        if m.session_id == s1 and m.step_id in ("what-to-expect", "day-of", "integration"):
            assert (m.status, m.reason) == ("cancelled", "no_show")
    # first_session steps move on to the first session still counted
    prep = [m for m in rows(rt, pid) if m.step_id == "prep-2days" and m.status == "scheduled"]
    assert {m.session_id for m in prep} == {_s3}


def test_consent_revoke_then_grant_reopens_same_ids(rt):
    pid, _ = enrolled(rt)
    sms = [m.id for m in rows(rt, pid) if m.channel == "sms" and m.status == "scheduled"]
    patients.set_consent(rt, str(pid), "sms", False, source="staff", by="t")
    now = by_id(rt)
    assert {(now[i].status, now[i].reason) for i in sms} == {("cancelled", "opted_out")}
    assert all(m.status == "scheduled" for m in now.values() if m.channel == "email" and m.reason is None
               and m.status != "skipped")
    patients.set_consent(rt, str(pid), "sms", True, source="staff", by="t")
    now = by_id(rt)
    assert {now[i].status for i in sms} == {"scheduled"}
    assert {events(rt, i)[-1].kind for i in sms} == {"reopened"}
    assert not reconcile(rt, pid)


def test_pause_then_resume_reopens_the_same_ids(rt):
    pid, eid = enrolled(rt)
    pending = {m.id: m.due_at for m in rows(rt, pid) if m.status == "scheduled"}
    enrollments.change_enrollment(rt, str(eid), "pause", by="t")
    now = by_id(rt)
    assert {(now[i].status, now[i].reason) for i in pending} == {("cancelled", "paused")}
    enrollments.change_enrollment(rt, str(eid), "resume", by="t")
    now = by_id(rt)
    assert {i: now[i].due_at for i in pending} == pending
    assert {now[i].status for i in pending} == {"scheduled"}
    assert len(rows(rt, pid)) == len(now)  # nothing new inserted


def test_withdraw_cancels_everything_pending(rt):
    pid, eid = enrolled(rt)
    enrollments.change_enrollment(rt, str(eid), "withdraw", by="t")
    assert {(m.status, m.reason) for m in rows(rt, pid)} == {("cancelled", "withdrawn")}
    assert not reconcile(rt, pid)


# --- skip ---------------------------------------------------------------------------------------------

def test_existing_row_skipped_by_daily_cap_and_planned_again_when_room_appears(rt):
    # 3/11 holds two SMS: integration of session 1 (18:00, priority 100) and what-to-expect of
    # session 2 (17:00, 70). A session booked 3/11 20:00 adds its day-of (17:00, 90): the cap
    # (2 SMS a day) skips the existing what-to-expect row (integration is never the one dropped).
    pid, _ = enrolled(rt, ["2027-03-10 18:00", "2027-03-12 12:00"])
    sid = session_ids(rt, pid)[1]
    before = {(m.step_id, m.channel): m for m in rows(rt, pid) if m.session_id == sid}
    capped = before[("what-to-expect", "sms")]
    assert capped.status == "scheduled"
    enrollments.add_session(rt, str(pid), "2027-03-11 20:00", by="t")
    after = by_id(rt)
    day = [m for m in after.values() if m.channel == "sms" and m.due_at.astimezone(NY).date().isoformat() == "2027-03-11"]
    assert len([m for m in day if m.status == "scheduled"]) == 2
    skipped = [m for m in day if m.status == "skipped"]
    assert skipped and {m.reason for m in skipped} == {"daily_cap"}
    assert capped.id in {m.id for m in skipped}
    assert events(rt, capped.id)[-1].kind == "skipped"
    # cancelling the new session frees the day: the skipped row is planned again (same id)
    new_sid = max(session_ids(rt, pid))
    enrollments.change_session(rt, str(new_sid), action="cancel", by="t")
    again = by_id(rt)[capped.id]
    assert (again.status, again.reason, again.due_at) == ("scheduled", None, capped.due_at)
    assert events(rt, capped.id)[-1].kind == "reopened"


# --- rows planning does not own --------------------------------------------------------------------

def test_claimed_rows_are_never_changed(rt):
    pid, _ = enrolled(rt)
    sid = session_ids(rt, pid)[1]
    mine = [m for m in rows(rt, pid) if m.session_id == sid and m.status == "scheduled"]
    sending, retrying = mine[0], mine[1]
    mark(rt, sending.id, status="sending", ever_claimed=True, lease_until=rt.clock.now() + timedelta(minutes=5))
    mark(rt, retrying.id, status="scheduled", ever_claimed=True, attempts=1,
         next_attempt_at=rt.clock.now() + timedelta(minutes=10))
    before = {m.id: (m.status, m.reason, m.due_at, m.updated_at) for m in rows(rt) if m.id in (sending.id, retrying.id)}
    evs = {i: len(events(rt, i)) for i in before}
    enrollments.change_session(rt, str(sid), at="2027-03-13 11:00", by="t")
    enrollments.change_session(rt, str(sid), action="cancel", by="t")
    after = by_id(rt)
    assert {i: (after[i].status, after[i].reason, after[i].due_at, after[i].updated_at) for i in before} == before
    assert {i: len(events(rt, i)) for i in before} == evs


def test_staff_cancelled_row_stays_cancelled(rt):
    pid, eid = enrolled(rt)
    target = next(m for m in rows(rt, pid) if m.status == "scheduled" and m.channel == "sms")
    staff_messages.cancel_message(rt, str(target.id), by="nurse")
    patients.set_consent(rt, str(pid), "sms", False, source="staff", by="t")
    patients.set_consent(rt, str(pid), "sms", True, source="staff", by="t")
    enrollments.change_enrollment(rt, str(eid), "pause", by="t")
    enrollments.change_enrollment(rt, str(eid), "resume", by="t")
    staff_messages.replan(rt, by="t")
    m = by_id(rt)[target.id]
    assert (m.status, m.reason) == ("cancelled", "staff")
    assert [(e.kind, e.reason, e.by) for e in events(rt, target.id)] == [
        ("planned", None, "tester"), ("cancelled", "staff", "nurse")]


def test_sent_once_only_step_is_not_planned_again_after_reschedule(rt):
    pid, _ = enrolled(rt)
    first = session_ids(rt, pid)[0]
    prep = [m for m in rows(rt, pid) if m.step_id == "prep-2days"]
    sms = next(m for m in prep if m.channel == "sms")
    email = next(m for m in prep if m.channel == "email")
    mark_sent(rt, sms.id)
    enrollments.change_session(rt, str(first), at="2027-03-11 09:00", by="t")
    after = [m for m in rows(rt, pid) if m.step_id == "prep-2days"]
    assert [m for m in after if m.channel == "sms"] == [by_id(rt)[sms.id]]  # only the sent one
    assert by_id(rt)[sms.id].status == "sent"
    # the unsent email copy follows the new date
    assert by_id(rt)[email.id].reason == "rescheduled"
    assert any(m.channel == "email" and m.status == "scheduled" and m.due_at == ny(2027, 3, 9, 10) for m in after)


def test_changed_time_zone_moves_rows_to_the_new_local_times(rt):
    pid, _ = enrolled(rt)
    wte = [m for m in rows(rt, pid) if m.step_id == "what-to-expect" and m.status == "scheduled"]
    patients.update_patient(rt, str(pid), timezone="Europe/London", by="t")
    after = by_id(rt)
    london = ZoneInfo("Europe/London")
    for m in wte:
        moved = after[m.id]
        assert moved.status == "scheduled"
        assert moved.due_at.astimezone(london).strftime("%H:%M") == "17:00"
        assert events(rt, m.id)[-1].kind == "moved"
    assert not reconcile(rt, pid)


def test_invalid_contact_cancels_its_pending_rows(rt):
    pid, _ = enrolled(rt)
    with transaction(rt.engine) as session:
        session.execute(sa.update(Patient).where(Patient.id == pid).values(phone_invalid=True))
    reconcile(rt, pid)
    sms = [m for m in rows(rt, pid) if m.channel == "sms"]
    assert {(m.status, m.reason) for m in sms} == {("cancelled", "contact_invalid")}
    assert any(m.status == "scheduled" for m in rows(rt, pid) if m.channel == "email")
    # staff enter a new number: the flag clears, but the new number needs consent first
    patients.update_patient(rt, str(pid), phone="+1 780 555 0177", by="t")
    assert {m.status for m in rows(rt, pid) if m.channel == "sms"} == {"cancelled"}
    patients.set_consent(rt, str(pid), "sms", True, source="staff", by="t")
    assert any(m.status == "scheduled" for m in rows(rt, pid) if m.channel == "sms")
