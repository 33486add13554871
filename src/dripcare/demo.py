"""`dripcare demo`: a whole course on a virtual clock, through the real planner and
dispatcher, with the example clinic shipped in the package, a throw-away SQLite file and
console output, whatever .env, the environment or the working directory say."""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dripcare.app import enrollments, patients
from dripcare.app import messages as staff_messages
from dripcare.app.rehearsal import fast_forward, virtual_rates
from dripcare.app.runtime import build_dispatcher, open_database, open_runtime
from dripcare.config.clock import VirtualClock
from dripcare.config.logs import counts_text
from dripcare.config.settings import Settings
from dripcare.delivery.transports.base import Outgoing
from dripcare.domain.privacy import mask_contact
from dripcare.domain.timing import local_wall, zone

EXAMPLES = Path(__file__).parent / "examples"
START = datetime(2027, 3, 1, 15, 0, tzinfo=timezone.utc)
PATIENTS = [  # one of each pathway; English and Spanish; discreet and not
    dict(first_name="Ana", last_name="Diaz", phone="+1 212 555 0143", email="ana.diaz@example.org",
         timezone="America/New_York", campaign="ketamine-iv", modality="iv", location="Riverbend Clinic, room 2",
         sessions=["2027-03-09 09:30", "2027-03-11 07:30", "2027-03-15 13:00"]),
    dict(first_name="Ben", last_name="Okafor", preferred_name="Benny", phone="780 555 0178",
         timezone="America/Edmonton", discreet=True, campaign="ketamine-iv", modality="im",
         location="Riverbend Clinic, room 2", sessions=["2027-03-10 10:00", "2027-03-12 10:00", "2027-03-16 10:00"]),
    dict(first_name="Chloé", last_name="Martin", email="chloe.martin@example.org",
         timezone="America/Vancouver", campaign="esketamine-intranasal", modality="intranasal",
         location="Riverbend Clinic, room 4", sessions=["2027-03-08 15:00", "2027-03-11 15:00", "2027-03-15 15:00"]),
    dict(first_name="Marisol", last_name="Reyes", phone="+1 213 555 0162", email="marisol.reyes@example.org",
         timezone="America/Los_Angeles", locale="es", discreet=True, campaign="ketamine-at-home",
         modality="sublingual", sessions=["2027-03-09 10:00", "2027-03-13 10:00", "2027-03-17 10:00"]),
]


class DemoConsole:
    """The console transport in one line a message, at the patient's local time."""

    development = True
    name = "console"

    def __init__(self, channel: str, console: Console, who: dict[int, tuple[str, str, str]]):
        self.channel, self.console, self.who = channel, console, who

    def send(self, out: Outgoing) -> str:
        name, tz_name, step = self.who[out.message_id]
        when = local_wall(out.now, zone(tz_name)).strftime("%a %b %d %H:%M")
        text = out.subject if out.channel == "email" else out.body
        self.console.print(f"[dim]{when}[/] [bold]{name:6}[/] {out.channel:5} {step:16} "
                           f"{mask_contact(out.to)}  {text}", markup=True, highlight=False, soft_wrap=True)
        return f"console-{out.message_id}"

    def lookup(self, out: Outgoing, since: datetime) -> str | None:
        return None


def run_demo(console: Console) -> int:
    with tempfile.TemporaryDirectory(prefix="dripcare-demo-") as tmp:
        settings = Settings({"DATABASE_URL": f"sqlite:///{Path(tmp) / 'demo.db'}",
                             "DRIPCARE_CONFIG_DIR": str(EXAMPLES / "config"),
                             "DRIPCARE_MESSAGES_DIR": str(EXAMPLES / "messages")})
        clock = VirtualClock(START)
        engine, _ = open_database(settings)
        rt = open_runtime(settings, engine=engine, clock=clock)
        console.print(f"[bold]{rt.clinic.name}[/]: demo on a virtual clock from {START:%Y-%m-%d %H:%M} UTC; "
                      "console transports, a throw-away database, nothing reaches anyone.\n")
        _enroll_samples(rt, console)
        sent = _run_course(rt, settings, clock, console)
        _summary(rt, console)
        engine.dispose()
        console.print(f"\n{sent} messages sent through the real dispatcher. Run `make test` for the suite.")
    return 0


def _enroll_samples(rt, console: Console) -> None:
    for sample in PATIENTS:
        sample = dict(sample)
        sessions, campaign = sample.pop("sessions"), sample.pop("campaign")
        modality, location = sample.pop("modality"), sample.pop("location", None)
        consent = [c for c in ("sms", "email") if sample.get("phone" if c == "sms" else "email")]
        patient = patients.add_patient(rt, consent=consent, consent_source="demo", by="demo", **sample)
        enrollments.enroll(rt, str(patient.id), campaign, sessions, by="demo", modality=modality, location=location)
        patient, rows = staff_messages.timeline(rt, patient.id)
        label = " (discreet)" if patient.discreet else ""
        console.print(f"[bold]{patient.first_name} {patient.last_name}{label}[/], {patient.timezone}")
        console.print(_plan_table(rows, patient.timezone))


def _plan_table(rows, tz_name: str) -> Table:
    table = Table("due (patient's time)", "step", "channel", "status", "reason")
    for m in rows:
        due = local_wall(m.due_at, zone(tz_name)).strftime("%a %b %d %H:%M")
        table.add_row(due, m.step_id, m.channel, m.status, m.reason or "")
    return table


def _run_course(rt, settings, clock, console) -> int:
    who: dict[int, tuple[str, str, str]] = {}
    transports = {c: DemoConsole(c, console, who) for c in ("sms", "email")}
    dispatcher = build_dispatcher(rt, settings, "demo", transports=transports, rates=virtual_rates(settings, clock))
    console.print("\n[bold]The course, as it goes out[/] (patient's local time)")
    try:
        return fast_forward(dispatcher, clock, before_pass=lambda: who.update(staff_messages.recipients(rt)))["sent"]
    finally:
        dispatcher.close()


def _summary(rt, console: Console) -> None:
    by_step: dict[str, Counter] = defaultdict(Counter)
    for step, status, reason, n in staff_messages.step_outcomes(rt):
        by_step[step][status + (f" ({reason})" if reason else "")] += n
    table = Table("step", "outcome")
    for step, counts in by_step.items():
        table.add_row(step, counts_text(counts))
    console.print("\n[bold]Summary per step[/]")
    console.print(table)
