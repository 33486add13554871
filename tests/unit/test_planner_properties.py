"""Property tests (hypothesis) over random courses, zones, offsets and DST-season dates:
the planner's invariants (SPEC 6) on plain values, and reconcile on a real SQLite file."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from sqlmodel import Session

from dripcare.app import enrollments
from dripcare.app import patients
from dripcare.app import runtime
from dripcare.domain.campaign import Campaign, Step
from dripcare.config.clinic import load_clinic
from dripcare.config.clock import VirtualClock
from dripcare.store.db import make_engine, transaction, upgrade
from dripcare.domain.inputs import BadInput
from dripcare.store.models import Message, MessageEvent, Patient
from dripcare.domain.planner import (EnrollmentState, PatientState, RowState, Rules, SessionState, expiry,
                              plan_patient)
from dripcare.app.reconcile import reconcile_patient
from dripcare.domain.timing import Offset, QuietHours, apply_offset, local_day, zone

UTC = timezone.utc
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "dripcare" / "examples"
ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "America/St_Johns",
         "America/Edmonton", "Europe/Dublin", "Pacific/Chatham", "America/Santiago", "America/Havana", "UTC"]
# Days around the 2027 DST changes of the zones above (north and south).
DST_DAYS = [datetime(2027, 3, 14, tzinfo=UTC), datetime(2027, 3, 28, tzinfo=UTC), datetime(2027, 4, 4, tzinfo=UTC),
            datetime(2027, 9, 5, tzinfo=UTC), datetime(2027, 9, 26, tzinfo=UTC), datetime(2027, 10, 3, tzinfo=UTC),
            datetime(2027, 10, 31, tzinfo=UTC), datetime(2027, 11, 7, tzinfo=UTC)]
QUIETS = [QuietHours(time(21, 0), time(8, 0)), QuietHours(time(22, 0), time(7, 0)),
          QuietHours(time(20, 0), time(9, 30)), QuietHours(time(1, 0), time(6, 0)),
          QuietHours(time(23, 30), time(0, 30))]
WENT_OUT = ("sending", "unconfirmed", "sent", "delivered", "undelivered")
PROPERTY = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
DB_PROPERTY = settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])


# --- strategies ----------------------------------------------------------------------------------

@st.composite
def offsets(draw) -> Offset:
    sign = draw(st.sampled_from([-1, 1]))
    kind = draw(st.sampled_from(["d", "h", "m", "dh", "zero"]))
    days = draw(st.integers(0, 35)) if "d" in kind else 0
    hours = draw(st.integers(0, 72)) if "h" in kind else 0
    minutes = draw(st.integers(0, 59)) if kind in ("m",) else 0
    if kind == "zero":
        return Offset()
    return Offset(days=sign * days, elapsed=sign * timedelta(hours=hours, minutes=minutes))


def outside(quiet: QuietHours):
    return st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60)).filter(
        lambda t: not quiet.contains_time(t))


@st.composite
def steps(draw, quiet: QuietHours, index: int) -> Step:
    anchor = draw(st.sampled_from(["enrollment", "first_session", "each_session", "last_session"]))
    session = anchor != "enrollment"
    expires = draw(st.one_of(
        st.none(), st.integers(1, 72).map(lambda h: timedelta(hours=h)),
        *([st.just("session_start")] if session else [])))
    return Step(id=f"s{index}", anchor=anchor, offset=draw(offsets()),
                at=draw(st.one_of(st.none(), outside(quiet))),
                channels=draw(st.sampled_from([("sms",), ("email",), ("sms", "email")])),
                priority=draw(st.integers(10, 90)), expires=expires,
                when=draw(st.sampled_from(["not_cancelled", "completed"])) if session else "not_cancelled")


@st.composite
def campaigns(draw, quiet: QuietHours) -> Campaign:
    n = draw(st.integers(1, 6))
    return Campaign(id="c", name="C", channels=("sms", "email"),
                    course_end=draw(st.sampled_from(["last_booked", "on_complete"])),
                    steps=tuple(draw(steps(quiet, i)) for i in range(n)), digest="x")


@st.composite
def instants(draw, base: datetime, spread_days: int = 12) -> datetime:
    return base + timedelta(minutes=draw(st.integers(-spread_days * 1440, spread_days * 1440)))


@st.composite
def worlds(draw):
    quiet = draw(st.sampled_from(QUIETS))
    base = draw(st.sampled_from(DST_DAYS))
    tz_name = draw(st.sampled_from(ZONES))
    campaign = draw(campaigns(quiet))
    n = draw(st.integers(0, 6))
    sessions = tuple(SessionState(id=i + 1, starts_at=draw(instants(base)),
                                  status=draw(st.sampled_from(["scheduled"] * 4 + ["completed", "cancelled", "no_show"])))
                     for i in range(n))
    now = draw(instants(base, 14))
    status = draw(st.sampled_from(["active", "active", "completed", "paused"]))
    enrollment = EnrollmentState(id=1, campaign=campaign, status=status,
                                 enrolled_at=now - timedelta(minutes=draw(st.integers(0, 3000))),
                                 completed=status == "completed", sessions=sessions)
    sms, email = draw(st.booleans()), draw(st.booleans())
    patient = PatientState(timezone=tz_name, reachable={"sms": True, "email": True},
                           consented={"sms": sms, "email": email})
    rules = Rules(quiet_hours=quiet, max_per_day={"sms": draw(st.integers(1, 3)), "email": draw(st.integers(1, 3))})
    return patient, enrollment, rules, now


def rows_from(planned) -> list[RowState]:
    return [RowState(id=i, key=p.key, enrollment_id=p.enrollment_id, step_id=p.step_id, channel=p.channel,
                     session_id=p.session_id, anchor_at=p.anchor_at, status=p.status, reason=p.reason,
                     due_at=p.due_at, expires_at=p.expires_at, sent_at=None, ever_claimed=False)
            for i, p in enumerate(planned, 1)]


# --- the pure planner --------------------------------------------------------------------------------

@PROPERTY
@given(worlds())
def test_scheduled_messages_are_before_expiry_outside_quiet_hours_and_not_in_the_past(world):
    patient, enrollment, rules, now = world
    tz = zone(patient.timezone)
    planned = plan_patient(patient, [enrollment], [], rules, now)
    per_day = Counter()
    for key, p in planned.items():
        assert key == p.key
        step = enrollment.campaign.step(p.step_id)
        assert p.channel in step.channels and patient.consented[p.channel]
        raw_due = apply_offset(p.anchor_at, step.offset, tz, step.at)
        assert p.expires_at == expiry(step, p.anchor_at, raw_due)  # rule 3, from the unshifted due
        if p.status == "skipped":
            assert p.reason in ("no_send_window", "daily_cap")
            continue
        assert (p.status, p.reason) == ("scheduled", None)
        assert p.due_at < p.expires_at, p
        assert not rules.quiet_hours.contains(p.due_at, tz), (p, p.due_at.astimezone(tz))
        assert p.due_at >= now
        if not step.offset.negative:
            assert p.due_at >= min(p.anchor_at, raw_due), p  # never moved back before the anchor
        per_day[(p.channel, local_day(p.due_at, tz))] += 1
    assert all(n <= rules.max_per_day[channel] for (channel, _), n in per_day.items())


@PROPERTY
@given(worlds(), st.integers(0, 72 * 60))
def test_planning_its_own_rows_again_changes_nothing(world, later_minutes):
    patient, enrollment, rules, now = world
    first = plan_patient(patient, [enrollment], [], rules, now)
    rows = rows_from(first.values())
    assert plan_patient(patient, [enrollment], rows, rules, now) == first
    # later, scheduled rows keep their time: only the dispatcher judges them against now
    later = plan_patient(patient, [enrollment], rows, rules, now + timedelta(minutes=later_minutes))
    for key, p in first.items():
        if p.status == "scheduled" and later.get(key) is not None and later[key].status == "scheduled":
            assert later[key].due_at == p.due_at


@PROPERTY
@given(worlds())
def test_anchors_follow_the_sessions(world):
    patient, enrollment, rules, now = world
    planned = plan_patient(patient, [enrollment], [], rules, now)
    if enrollment.status == "paused":
        assert planned == {}
        return
    counted = sorted((s for s in enrollment.sessions if s.status in ("scheduled", "completed")),
                     key=lambda s: (s.starts_at, s.id))
    by_id = {s.id: s for s in enrollment.sessions}
    for p in planned.values():
        step = enrollment.campaign.step(p.step_id)
        if step.anchor == "enrollment":
            assert p.session_id is None and p.anchor_at == enrollment.enrolled_at
            continue
        session = by_id[p.session_id]
        assert session.status in ("scheduled", "completed") and p.anchor_at == session.starts_at
        if step.when == "completed":
            assert session.status == "completed"
        if step.anchor == "first_session":
            assert session == counted[0]
        if step.anchor == "last_session":
            assert session == counted[-1]
            if enrollment.campaign.course_end == "on_complete":
                assert enrollment.completed


# --- reconcile on a real SQLite file -----------------------------------------------------------------

@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def clinic():
    return load_clinic(EXAMPLES / "config")


class FreshRuntime:
    """A new database (a copy of the migrated template) per hypothesis example."""

    def __init__(self, template: Path, clinic, campaign: Campaign, now: datetime):
        self.dir = tempfile.mkdtemp(prefix="dripcare-prop-")
        shutil.copy(template, Path(self.dir) / "db.sqlite")
        engine = make_engine(f"sqlite:///{self.dir}/db.sqlite")
        self.rt = runtime.Runtime(engine, clinic, {"c": campaign}, VirtualClock(now))

    def __enter__(self):
        return self.rt

    def __exit__(self, *exc):
        self.rt.engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


def iso(instant: datetime) -> str:
    return instant.isoformat()


def all_rows(rt) -> dict[int, tuple]:
    with Session(rt.engine) as session:
        return {r.id: tuple(r) for r in session.execute(sa.select(Message.__table__))}


def event_count(rt) -> int:
    with Session(rt.engine) as session:
        return session.execute(sa.select(sa.func.count()).select_from(MessageEvent)).scalar_one()


def reconcile_again(rt, pid: int):
    with transaction(rt.engine) as session:
        return reconcile_patient(session, session.get(Patient, pid), rt.clinic, rt.campaigns, rt.clock.now(), "again")


def session_ids(rt, eid: int) -> list[int]:
    with Session(rt.engine) as session:
        return list(session.execute(sa.text("SELECT id FROM treatment_session WHERE enrollment_id = :e ORDER BY id"),
                                    {"e": eid}).scalars())


OPERATIONS = ["reschedule", "cancel", "no-show", "complete", "add", "revoke", "grant", "pause", "resume",
              "finish", "wait"]


@st.composite
def courses(draw):
    quiet = QuietHours(time(21, 0), time(8, 0))  # the example clinic's
    base = draw(st.sampled_from(DST_DAYS))
    return dict(
        campaign=draw(campaigns(quiet)), tz=draw(st.sampled_from(ZONES)), base=base,
        sessions=draw(st.lists(instants(base), min_size=1, max_size=6)),
        now=draw(instants(base, 10)),
        consent=draw(st.sampled_from([["sms"], ["email"], ["sms", "email"]])),
        ops=draw(st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 7), instants(base),
                                    st.integers(0, 48 * 60)), max_size=5)))


def setup_patient(rt, course) -> tuple[int, int]:
    pid = patients.add_patient(rt, first_name="P", last_name="Q", phone="+1 780 555 0123", email="p@example.org",
                              timezone=course["tz"], consent=course["consent"], by="prop").id
    eid = enrollments.enroll(rt, str(pid), "c", [iso(s) for s in course["sessions"]], by="prop").id
    return pid, eid


def apply(rt, pid: int, eid: int, op: str, index: int, when: datetime, minutes: int) -> None:
    sids = session_ids(rt, eid)
    sid = str(sids[index % len(sids)])
    try:
        if op == "reschedule":
            enrollments.change_session(rt, sid, at=iso(when), by="prop")
        elif op in ("cancel", "no-show", "complete"):
            enrollments.change_session(rt, sid, action=op, by="prop")
        elif op == "add":
            enrollments.add_session(rt, str(pid), iso(when), by="prop")
        elif op in ("revoke", "grant"):
            patients.set_consent(rt, str(pid), ["sms", "email"][index % 2], op == "grant", source="staff", by="prop")
        elif op in ("pause", "resume"):
            enrollments.change_enrollment(rt, str(eid), op, by="prop")
        elif op == "finish":
            enrollments.change_enrollment(rt, str(eid), "complete", by="prop")
        else:
            rt.clock.advance(timedelta(minutes=minutes))
    except BadInput:
        pass  # e.g. rescheduling a cancelled session: refused, nothing written


@DB_PROPERTY
@given(courses())
def test_reconcile_twice_changes_nothing(template_db, clinic, course):
    with FreshRuntime(template_db, clinic, course["campaign"], course["now"]) as rt:
        pid, eid = setup_patient(rt, course)
        for op in course["ops"]:
            apply(rt, pid, eid, *op)
        tz = zone(course["tz"])
        with Session(rt.engine) as session:
            for m in session.execute(sa.select(Message).where(Message.status == "scheduled")).scalars():
                assert m.due_at < m.expires_at, (m.step_id, m.due_at, m.expires_at)
                assert not clinic.quiet_hours.contains(m.due_at, tz), (m.step_id, m.due_at.astimezone(tz))
        before, events = all_rows(rt), event_count(rt)
        changes = reconcile_again(rt, pid)
        assert not changes, changes.counts
        assert all_rows(rt) == before and event_count(rt) == events


@DB_PROPERTY
@given(courses(), st.lists(st.booleans(), min_size=1, max_size=60), st.integers(0, 7), st.data())
def test_reschedule_leaves_sent_rows_untouched(template_db, clinic, course, sent_mask, which, data):
    with FreshRuntime(template_db, clinic, course["campaign"], course["now"]) as rt:
        pid, eid = setup_patient(rt, course)
        rows = all_rows(rt)
        with transaction(rt.engine) as session:
            ids = sorted(rows)
            for i, mid in enumerate(ids):
                if sent_mask[i % len(sent_mask)] and rows[mid][Message.__table__.c.keys().index("status")] in (
                        "scheduled", "skipped"):
                    # as the dispatcher leaves a row it sent
                    session.execute(sa.update(Message).where(Message.id == mid).values(
                        status="sent", ever_claimed=True, sent_at=rt.clock.now(), attempts=1,
                        provider_id=f"test-{mid}", lease_until=None))
        sent = {mid: row for mid, row in all_rows(rt).items() if row[Message.__table__.c.keys().index("status")] == "sent"}
        sids = session_ids(rt, eid)
        sid = sids[which % len(sids)]
        new_start = data.draw(instants(course["base"]))
        try:
            enrollments.change_session(rt, str(sid), at=iso(new_start), by="prop")
        except BadInput:
            assume(False)
        after = all_rows(rt)
        assert {mid: after[mid] for mid in sent} == sent

        # once-only steps that went out are not planned again; each_session steps follow the new date
        with Session(rt.engine) as session:
            messages = list(session.execute(sa.select(Message).where(Message.patient_id == pid)).scalars())
        went = {(m.step_id, m.channel) for m in messages if m.status in WENT_OUT}
        campaign = course["campaign"]
        for m in messages:
            step = campaign.step(m.step_id)
            if step.anchor != "each_session" and (m.step_id, m.channel) in went and m.status != "sent":
                assert m.status not in ("scheduled", "skipped"), (m.step_id, m.channel, m.status)
        for step in campaign.steps:
            if step.anchor == "each_session" and step.when == "not_cancelled":
                for channel in set(step.channels) & set(course["consent"]):
                    assert any(m.step_id == step.id and m.channel == channel and m.session_id == sid
                               and m.anchor_at == new_start for m in messages), (step.id, channel)
        assert not reconcile_again(rt, pid)
