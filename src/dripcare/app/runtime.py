"""The runtime every face shares, and the one place that builds it: database and clock,
the clinic's files, templates, transports, send pacing and the dispatcher. The CLI, the
worker, the web process and the demo all come through here; nothing else wires a
transport (import-linter keeps it so)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dripcare.app.reconcile import Changes, reconcile_patient, reconcile_patients
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import Clinic, load_clinic
from dripcare.config.clock import Clock
from dripcare.config.settings import Settings
from dripcare.config.terms import load_sensitive_terms
from dripcare.delivery.rate import Pacer, SendRate, SharedRate
from dripcare.delivery.templates import Templates
from dripcare.domain.campaign import Campaign
from dripcare.domain.discreet import SensitiveTerms
from dripcare.store.db import ensure_schema, make_engine
from dripcare.store.models import Patient



@dataclass
class Runtime:
    """What every use case needs: the database, the clinic's files, and the clock."""

    engine: Engine
    clinic: Clinic
    campaigns: dict[str, Campaign]
    clock: Clock
    config_dir: Path | None = None
    messages_dir: Path | None = None
    terms: SensitiveTerms = field(default_factory=lambda: SensitiveTerms([]))
    templates: Templates | None = None

    def __post_init__(self):
        if self.templates is None and self.messages_dir is not None:
            self.templates = Templates(self.messages_dir, self.clinic)

    def use(self, clinic: Clinic | None = None, campaigns: dict[str, Campaign] | None = None,
            terms: SensitiveTerms | None = None) -> None:
        """New versions of the clinic's files, taken while running (a live reload)."""
        if clinic is not None:
            self.clinic = clinic
            if self.templates is not None:
                self.templates.use(clinic)
        if campaigns is not None:
            self.campaigns.clear()
            self.campaigns.update(campaigns)
        if terms is not None:
            self.terms = terms

    def replan(self, session: Session, patient: Patient, by: str | None, now: datetime | None = None) -> Changes:
        return reconcile_patient(session, patient, self.clinic, self.campaigns, now or self.clock.now(), by)

    def replan_many(self, session: Session, patients: list[Patient], by: str | None,
                    now: datetime | None = None) -> Changes:
        return reconcile_patients(session, patients, self.clinic, self.campaigns, now or self.clock.now(), by)



def open_database(settings: Settings, *, check: bool = True) -> tuple[Engine, Clock]:
    """The engine (schema created or checked) and the clock. SettingsError, DatabaseBehind
    or the driver's error when the database cannot be opened."""
    engine = make_engine(settings.database_url)
    if check:
        ensure_schema(engine)
    return engine, settings.clock()


def load_config(settings: Settings) -> tuple[Clinic, dict[str, Campaign], SensitiveTerms]:
    """clinic.toml, every campaign and the sensitive terms; ConfigError names what is wrong."""
    clinic = load_clinic(settings.config_dir)
    return (clinic, load_campaigns(settings.config_dir, clinic, settings.messages_dir),
            load_sensitive_terms(settings.config_dir))


def open_runtime(settings: Settings, *, engine: Engine | None = None, clock: Clock | None = None) -> Runtime:
    if engine is None:
        engine, system_clock = open_database(settings)
        clock = clock or system_clock
    clinic, campaigns, terms = load_config(settings)
    return Runtime(engine=engine, clinic=clinic, campaigns=campaigns, clock=clock or settings.clock(),
                   config_dir=settings.config_dir, messages_dir=settings.messages_dir, terms=terms)


# --- sending ---------------------------------------------------------------------------------

def build_transports(settings: Settings, *, console=None):
    """{"sms": ..., "email": ...} as DRIPCARE_SMS_TRANSPORT / DRIPCARE_EMAIL_TRANSPORT say."""
    from dripcare.delivery.transports import build_transports as choose

    return choose(settings, console=console)


def build_rates(settings: Settings, engine: Engine) -> dict[str, Pacer]:
    """One pace per channel for the whole deployment: on PostgreSQL shared by every worker
    through the database; on SQLite (one worker) kept in the process."""
    rates = {"sms": settings.sms_rate, "email": settings.email_rate}
    if engine.dialect.name == "postgresql":
        return {c: SharedRate(engine, c, r) for c, r in rates.items()}
    return {c: SendRate(r) for c, r in rates.items()}


def live_workers(engine: Engine, interval: float) -> Callable[[], int]:
    """How many workers share the rate now (at least this one)."""
    from dripcare.app.workers import real_now, stale_after
    from dripcare.store import workers

    def count() -> int:
        with Session(engine) as session:
            return max(1, len(workers.alive(session, real_now(), stale_after(interval))))
    return count


def build_dispatcher(rt: Runtime, settings: Settings, worker_id: str, *, transports=None,
                     rates: dict[str, Pacer] | None = None, console=None):
    """The dispatcher every entry point uses: transports, pacing and outcomes wired here."""
    from dripcare.app.outcomes import Outcomes
    from dripcare.delivery.dispatch import DispatchOptions, Dispatcher

    if rt.templates is None:
        rt.templates = Templates(settings.messages_dir, rt.clinic)
    transports = transports or build_transports(settings, console=console)
    development = [c for c, t in transports.items() if t.development]
    options = DispatchOptions(worker_id=worker_id, batch=settings.dispatch_batch,
                              concurrency=settings.send_concurrency, interval=settings.dispatch_interval,
                              public_base_url=settings.public_base_url or (
                                  "http://localhost:8000" if development else None),
                              secret_key=settings.unsubscribe_keys()[0])
    workers = live_workers(rt.engine, settings.dispatch_interval) if rt.engine.dialect.name == "postgresql" \
        else (lambda: 1)
    return Dispatcher(rt, transports, rates or build_rates(settings, rt.engine), options, Outcomes(rt), workers)


def build_notifier(rt: Runtime, settings: Settings):
    """What tells the clinic a reply is waiting (app/notices.py), on the deployment's own
    transports. A channel whose settings are missing or wrong is off and said so, never a
    reason for the web process, which answers STOP and crisis replies, not to start."""
    from dripcare.app.notices import ClinicNotices
    from dripcare.config.settings import SettingsError

    found, off = {}, {}
    for channel, other in (("email", "DRIPCARE_SMS_TRANSPORT"), ("sms", "DRIPCARE_EMAIL_TRANSPORT")):
        alone = Settings({**settings.env, other: "console"})  # only this channel's settings are checked
        try:
            found[channel] = build_transports(alone)[channel]
        except SettingsError as error:
            off[channel] = error.lines
    return ClinicNotices(rt, email=found.get("email"), sms=found.get("sms"), off=off)
