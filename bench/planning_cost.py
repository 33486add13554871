"""Measure 2: planning. `enrollments.enroll` (plan + reconcile + write for a 12-session course)
per patient, `staff_messages.replan` of everyone when nothing changed, and enroll again once the
outbox holds a large backlog of other patients' rows."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dripcare.app import enrollments
from dripcare.app import messages as staff_messages
from dripcare.app import patients
from dripcare.app import runtime
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.config.clock import Clock, VirtualClock
from dripcare.store.db import transaction
from dripcare.store.models import Message, Patient
from dripcare.domain.planner import plan_patient
from dripcare.app.reconcile import enrollment_states, patient_state, rules_of

import claim_cost
from measure import EXAMPLES, Section, count, fresh_sqlite, median_of, memory_of, mib, ms, say, seconds

START = datetime(2027, 3, 1, 15, 0, tzinfo=timezone.utc)
ZONE = "America/Edmonton"
SESSIONS = 12


@dataclass
class PlanningResult:
    patients: int
    enroll_times: list[float]
    rows: int
    replan: float
    replan_changes: dict
    replan_peak: int
    crowded_backlog: int
    crowded_times: list[float]
    pure_plan: float


def runtime(engine: Engine, clock: Clock) -> runtime.Runtime:
    """Built as tests/conftest.py builds it: the example clinic and campaigns."""
    clinic = load_clinic(EXAMPLES / "config")
    return runtime.Runtime(engine, clinic, load_campaigns(EXAMPLES / "config", clinic, EXAMPLES / "messages"), clock)


def course(first_day: datetime) -> list[str]:
    """Twelve sessions, Mondays and Thursdays at 09:30 local, from `first_day` on."""
    days, day = [], first_day
    while len(days) < SESSIONS:
        if day.weekday() in (0, 3):
            days.append(f"{day:%Y-%m-%d} 09:30")
        day += timedelta(days=1)
    return days


def add_patient(rt: runtime.Runtime, n: int, phone: bool = True):
    return patients.add_patient(
        rt, first_name=f"Pat{n}", last_name="Bench", phone=f"+1 780 555 01{n % 100:02d}" if phone else None,
        email=f"pat{n}@example.org", timezone=ZONE, consent=["sms", "email"] if phone else ["email"], by="bench")


def enroll_one(rt: runtime.Runtime, n: int) -> float:
    """Seconds for one enroll (the patient is added first, untimed)."""
    patient = add_patient(rt, n)
    sessions = course(START + timedelta(days=7 + n % 7))
    elapsed, _ = seconds(lambda: enrollments.enroll(rt, str(patient.id), "ketamine-iv", sessions, by="bench"))
    return elapsed


def message_count(engine: Engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(Message.__table__)).scalar_one()


def time_pure_plan(rt: runtime.Runtime, repeats: int) -> float:
    """The pure planner alone for the first patient's course, as if nothing were written yet."""
    with transaction(rt.engine) as session:
        patient = session.execute(sa.select(Patient).order_by(Patient.id)).scalars().first()
        state = patient_state(session, patient)
        enrollments = enrollment_states(session, patient.id, rt.campaigns)
    rules, now = rules_of(rt.clinic), rt.clock.now()
    return median_of(lambda: plan_patient(state, enrollments, [], rules, now), repeats * 10)


def measure(workdir: Path, patients: int, crowd: int, repeats: int) -> PlanningResult:
    engine = fresh_sqlite(workdir / "planning.db")
    rt = runtime(engine, VirtualClock(START))
    say(f"planning: enrolling {patients} patients, {SESSIONS} sessions each ...")
    times = [enroll_one(rt, n) for n in range(patients)]
    rows = message_count(engine)
    changes: list = []
    replan = median_of(lambda: changes.append(staff_messages.replan(rt, by="bench")), repeats)
    _held, peak, _ = memory_of(lambda: staff_messages.replan(rt, by="bench"))
    pure = time_pure_plan(rt, repeats)
    say(f"  enroll median {ms(statistics.median(times))}; replan of {patients} patients {ms(replan)}")
    say(f"planning: {count(crowd)} other rows in the outbox, then {patients // 5} more enrollments ...")
    claim_cost.add_future(engine, claim_cost.add_owner(engine, START), 0, crowd, START)
    crowded = [enroll_one(rt, patients + n) for n in range(max(patients // 5, 3))]
    say(f"  enroll median with the crowd {ms(statistics.median(crowded))}")
    engine.dispose()
    return PlanningResult(patients, times, rows, replan, dict(+changes[-1].counts), peak, crowd, crowded,
                          pure)


def run(workdir: Path, patients: int, crowd: int, repeats: int) -> Section:
    r = measure(workdir, patients, crowd, repeats)
    section = Section("2. Planning")
    per_patient = r.rows / r.patients
    section.table(["measure", "median", "mean", "min", "max", "what was done"], [
        ["enroll (plan + reconcile + write)", *_spread(r.enroll_times),
         f"{r.patients} patients, {SESSIONS} sessions each: {per_patient:.0f} outbox rows per enrollment"],
        [f"enroll with {count(r.crowded_backlog)} other rows in the outbox", *_spread(r.crowded_times),
         f"{len(r.crowded_times)} more patients, same course"],
        ["pure planner alone (plan_patient)", ms(r.pure_plan), "", "", "",
         "one patient's course from loaded state, no database"],
        ["replan of every patient, nothing to change", ms(r.replan), "", "", "",
         f"{r.patients} patients, {count(r.rows)} rows; changes: {r.replan_changes or 'none'}"],
    ])
    section.table(["memory", "value"], [["replan of every patient: peak traced allocation (tracemalloc)",
                                        mib(r.replan_peak)]])
    enroll, crowded = statistics.median(r.enroll_times), statistics.median(r.crowded_times)
    section.meaning += [
        f"An enrollment is one transaction: the enrollment and its {SESSIONS} sessions are written, the "
        f"patient's state and rows are read, the pure planner computes the course's {per_patient:.0f} outbox "
        f"rows (scheduled, or skipped by the daily cap), and reconcile inserts them with one event each. That "
        f"took {ms(enroll)} (median) per patient, about {ms(enroll / per_patient)} per row: a clinic enrolling "
        f"a few patients a day never notices it, and an import of a thousand patients takes about "
        f"{enroll * 1000:.0f} seconds. The pure planner's share is {ms(r.pure_plan)} "
        f"({r.pure_plan / enroll:.0%}); the rest is the database: reading the state and writing the rows and "
        f"their events.",
        f"With {count(r.crowded_backlog)} rows of other patients in the outbox an enrollment took {ms(crowded)} "
        f"({crowded / enroll:.2f}x): reconcile reads one patient's rows through the patient index, not the "
        f"table, so its cost does not follow the size of the outbox.",
        f"A replan of all {r.patients} patients with nothing to change took {ms(r.replan)} "
        f"({ms(r.replan / r.patients)} per patient) and changed {r.replan_changes or 'nothing'}: "
        f"running it again is a no-op, which is what lets the worker replan everyone when a campaign file "
        f"changes. It works patient by patient, so its memory stays small ({mib(r.replan_peak)} traced peak).",
    ]
    section.headline = (f"enroll of a {SESSIONS}-session course ({per_patient:.0f} rows): {ms(enroll)} per patient "
                        f"(pure planner {ms(r.pure_plan)}); replan of {r.patients} unchanged patients "
                        f"{ms(r.replan)}, " + ("no changes" if not r.replan_changes else f"changes {r.replan_changes}"))
    return section


def _spread(times: list[float]) -> list[str]:
    return [ms(statistics.median(times)), ms(statistics.mean(times)), ms(min(times)), ms(max(times))]
