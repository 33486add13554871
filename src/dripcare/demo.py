"""`dripcare demo`: a whole course on a virtual clock, through the real planner and
dispatcher, with the example clinic shipped in the package, a throw-away SQLite file and
console output, whatever .env, the environment or the working directory say."""

from __future__ import annotations

import tempfile
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from . import service
from .campaigns import load_campaigns
from .clinic import load_clinic
from .clock import VirtualClock
from .db import make_engine, upgrade
from .models import Message, Patient
from .rate import SendRate
from .settings import Settings
from .timing import local_wall, zone
from .transports.base import Outgoing, mask_contact

EXAMPLES = Path(__file__).parent / "examples"
START = datetime(2027, 3, 1, 15, 0, tzinfo=timezone.utc)
PATIENTS = [
    dict(first_name="Ana", last_name="Diaz", phone="+1 212 555 0143", email="ana.diaz@example.org",
         timezone="America/New_York", sessions=["2027-03-09 09:30", "2027-03-11 07:30", "2027-03-15 13:00"]),
    dict(first_name="Ben", last_name="Okafor", preferred_name="Benny", phone="780 555 0178",
         timezone="America/Edmonton", discreet=True,
         sessions=["2027-03-10 10:00", "2027-03-12 10:00", "2027-03-16 10:00"]),
    dict(first_name="Chloé", last_name="Martin", email="chloe.martin@example.org",
         timezone="America/Vancouver", sessions=["2027-03-08 15:00", "2027-03-10 15:00", "2027-03-12 15:00"]),
]


class LockedClock(VirtualClock):
    """The virtual clock, safe to advance from the send threads (the rate follows it)."""

    def __init__(self, start: datetime):
        super().__init__(start)
        self._lock = threading.Lock()

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            super().advance(delta)


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
        engine = make_engine(settings.database_url)
        upgrade(engine)
        clinic = load_clinic(settings.config_dir)
        clock = LockedClock(START)
        rt = service.Runtime(engine, clinic, load_campaigns(settings.config_dir, clinic, settings.messages_dir), clock)
        console.print(f"[bold]{clinic.name}[/]: demo on a virtual clock from {START:%Y-%m-%d %H:%M} UTC; "
                      "console transports, a throw-away database, nothing reaches anyone.\n")
        _enroll_samples(rt, console)
        sent = _run_course(rt, settings, clock, console, engine)
        _summary(engine, console)
        engine.dispose()
        console.print(f"\n{sent} messages sent through the real dispatcher. Run `make test` for the suite.")
    return 0


def _enroll_samples(rt: service.Runtime, console: Console) -> None:
    from .cli.messages import timeline_table

    for sample in PATIENTS:
        sample = dict(sample)
        sessions = sample.pop("sessions")
        consent = [c for c in ("sms", "email") if sample.get("phone" if c == "sms" else "email")]
        patient = service.add_patient(rt, consent=consent, consent_source="demo", by="demo", **sample)
        service.enroll(rt, str(patient.id), "ketamine-iv", sessions, by="demo", modality="iv",
                       location="Riverbend Clinic, room 2")
        with Session(rt.engine) as session:
            rows = session.execute(sa.select(Message).where(Message.patient_id == patient.id)
                                   .order_by(Message.due_at, Message.id)).scalars().all()
        label = " (discreet)" if patient.discreet else ""
        console.print(f"[bold]{patient.first_name} {patient.last_name}{label}[/], {patient.timezone}")
        console.print(timeline_table([(m, patient.timezone) for m in rows], with_patient=False))


def _run_course(rt, settings, clock, console, engine) -> int:
    from .worker import build_dispatcher

    who: dict[int, tuple[str, str, str]] = {}
    transports = {c: DemoConsole(c, console, who) for c in ("sms", "email")}
    rates = {c: SendRate(r, now=lambda: clock.now().timestamp(), sleep=lambda s: clock.advance(timedelta(seconds=s)))
             for c, r in (("sms", settings.sms_rate), ("email", settings.email_rate))}
    dispatcher = build_dispatcher(rt, settings, "demo", transports=transports, rates=rates)
    sent = 0
    console.print("\n[bold]The course, as it goes out[/] (patient's local time)")
    try:
        for _ in range(1000):  # bounded: a course has far fewer due moments
            with Session(engine) as session:
                when = session.execute(sa.select(sa.func.min(sa.func.coalesce(Message.next_attempt_at, Message.due_at)))
                                       .where(Message.status == "scheduled")).scalar()
                who.update({m: (n, tz, s) for m, n, tz, s in session.execute(
                    sa.select(Message.id, sa.func.coalesce(Patient.preferred_name, Patient.first_name),
                              Patient.timezone, Message.step_id).join(Patient)).all()})
            if when is None:
                break
            clock.set(max(clock.now(), when))
            sent += dispatcher.run_pass()["sent"]
    finally:
        dispatcher.close()
    return sent


def _summary(engine, console: Console) -> None:
    with Session(engine) as session:
        rows = session.execute(sa.select(Message.step_id, Message.status, Message.reason, sa.func.count())
                               .group_by(Message.step_id, Message.status, Message.reason)).all()
    by_step: dict[str, Counter] = defaultdict(Counter)
    for step, status, reason, n in rows:
        by_step[step][status + (f" ({reason})" if reason else "")] += n
    table = Table("step", "outcome")
    for step, counts in by_step.items():
        table.add_row(step, ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    console.print("\n[bold]Summary per step[/]")
    console.print(table)
