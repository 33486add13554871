"""`dripcare demo`: a whole course on a virtual clock, through the real planner and
dispatcher, with the example clinic shipped in the package, a throw-away SQLite file and
console output, whatever .env, the environment or the working directory say."""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from dripcare.app import service
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.config.clock import VirtualClock
from dripcare.store.db import make_engine, upgrade
from dripcare.config.logs import counts_text
from dripcare.store.models import Message, Patient
from dripcare.delivery.rate import SendRate
from dripcare.config.settings import Settings
from dripcare.domain.timing import local_wall, zone
from dripcare.delivery.transports.base import Outgoing, mask_contact

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
        clock = VirtualClock(START)
        rt = service.Runtime(engine, clinic, load_campaigns(settings.config_dir, clinic, settings.messages_dir), clock)
        console.print(f"[bold]{clinic.name}[/]: demo on a virtual clock from {START:%Y-%m-%d %H:%M} UTC; "
                      "console transports, a throw-away database, nothing reaches anyone.\n")
        _enroll_samples(rt, console)
        sent = _run_course(rt, settings, clock, console)
        _summary(engine, console)
        engine.dispose()
        console.print(f"\n{sent} messages sent through the real dispatcher. Run `make test` for the suite.")
    return 0


def _enroll_samples(rt: service.Runtime, console: Console) -> None:
    from dripcare.cli.messages import timeline_table

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


def fast_forward(dispatcher, clock: VirtualClock, until: datetime | None = None,
                 before_pass=None) -> Counter:
    """Jump the virtual clock from one due moment to the next, running the real dispatcher
    at each, until nothing is left to send (or `until`). Nothing sleeps."""
    total: Counter = Counter()
    for _ in range(5000):  # bounded: a course has far fewer due moments
        when = next_moment(dispatcher.rt.engine, clock.now())
        if when is None or (until is not None and when > until):
            break
        clock.set(max(clock.now(), when))
        if before_pass:
            before_pass()
        total.update(dispatcher.run_pass())
    if until is not None:
        clock.set(max(clock.now(), until))
    return total


def next_moment(engine, now: datetime) -> datetime | None:
    """The next instant the dispatcher has something to do: a due row, a lease running
    out, or an unconfirmed row's grace ending."""
    from dripcare.delivery.dispatch import UNCONFIRMED_GRACE

    with Session(engine) as session:
        due = session.execute(sa.select(sa.func.min(sa.func.coalesce(Message.next_attempt_at, Message.due_at)))
                              .where(Message.status == "scheduled")).scalar()
        lease = session.execute(sa.select(sa.func.min(Message.lease_until)).where(Message.status == "sending")).scalar()
        attempt = session.execute(sa.select(sa.func.min(Message.attempted_at))
                                  .where(Message.status == "unconfirmed")).scalar()
    moments = [m for m in (due, lease, attempt and max(attempt + UNCONFIRMED_GRACE, now + timedelta(minutes=1)))
               if m is not None]
    return min(moments) if moments else None


def _run_course(rt, settings, clock, console) -> int:
    from dripcare.worker import build_dispatcher

    who: dict[int, tuple[str, str, str]] = {}

    def learn_names():
        with Session(rt.engine) as session:
            who.update({m: (n, tz, s) for m, n, tz, s in session.execute(
                sa.select(Message.id, sa.func.coalesce(Patient.preferred_name, Patient.first_name),
                          Patient.timezone, Message.step_id).join(Patient)).all()})

    transports = {c: DemoConsole(c, console, who) for c in ("sms", "email")}
    dispatcher = build_dispatcher(rt, settings, "demo", transports=transports, rates=virtual_rates(settings, clock))
    console.print("\n[bold]The course, as it goes out[/] (patient's local time)")
    try:
        return fast_forward(dispatcher, clock, before_pass=learn_names)["sent"]
    finally:
        dispatcher.close()


def virtual_rates(settings: Settings, clock: VirtualClock) -> dict[str, SendRate]:
    """Send spacing on the virtual clock: waiting for a slot moves the clock, not the wall."""
    return {c: SendRate(r, now=lambda: clock.now().timestamp(), sleep=lambda s: clock.advance(timedelta(seconds=s)))
            for c, r in (("sms", settings.sms_rate), ("email", settings.email_rate))}


def _summary(engine, console: Console) -> None:
    with Session(engine) as session:
        rows = session.execute(sa.select(Message.step_id, Message.status, Message.reason, sa.func.count())
                               .group_by(Message.step_id, Message.status, Message.reason)).all()
    by_step: dict[str, Counter] = defaultdict(Counter)
    for step, status, reason, n in rows:
        by_step[step][status + (f" ({reason})" if reason else "")] += n
    table = Table("step", "outcome")
    for step, counts in by_step.items():
        table.add_row(step, counts_text(counts))
    console.print("\n[bold]Summary per step[/]")
    console.print(table)
