"""`dripcare import` (SPEC 9): the clinic's CSV export -> checked rows -> one transaction.

A bad file writes nothing and names every bad row at once, so staff fix the file in
one go rather than one error per run. Four passes: read (the file and its header),
check each row on its own, gather the rows of one patient (same external_id), and
check them against the database; then, in the same transaction, write and replan."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.domain import inputs
from dripcare.domain.campaign import Campaign
from dripcare.config.clinic import Clinic
from dripcare.store.db import transaction
from dripcare.domain.inputs import BadInput
from dripcare.store.models import Enrollment, Patient, TreatmentSession
from dripcare.app.patients import change_patient, give_consent, new_patient
from dripcare.app.enrollments import new_enrollment
from dripcare.domain.timing import zone

COLUMNS = ("external_id", "first_name", "last_name", "preferred_name", "phone", "email", "timezone", "locale",
           "discreet", "consent_sms", "consent_email", "campaign", "session_at", "status", "modality",
           "location", "duration")
REQUIRED = ("first_name", "last_name")
PATIENT_FIELDS = ("first_name", "last_name", "preferred_name", "phone", "email", "timezone", "locale", "discreet")
CONSENT_COLUMNS = {"sms": ("consent_sms", "phone"), "email": ("consent_email", "email")}
SESSION_DETAILS = ("status", "modality", "location", "duration")
YES, NO = ("yes", "true", "y", "1"), ("no", "false", "n", "0")
SESSION_STATUSES = ("scheduled", "completed", "cancelled", "no_show")
# A file may move a booked session on (as `dripcare session` does), never back: an old
# export re-imported must not reopen a session the clinic has since closed.
STATUS_MOVES = {"scheduled": SESSION_STATUSES, "no_show": ("completed",)}
OPEN_ENROLLMENT = ("active", "paused", "completed")
LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
DEFAULT_DURATION = 60


class BadRows(BadInput):
    """Every bad row of a file, one line each (in `lines`)."""

    def __init__(self, lines: list[str], filename: str):
        plural = "" if len(lines) == 1 else "s"
        super().__init__(f"{len(lines)} bad row{plural} in {filename}; nothing was imported")
        self.lines = lines


class Problems:
    """What is wrong, gathered per file line so each bad row is reported on one line."""

    def __init__(self) -> None:
        self._by_line: dict[int, list[str]] = defaultdict(list)

    def add(self, line: int, column: str | None, reason: str) -> None:
        self._by_line[line].append(f"{column}: {reason}" if column else reason)

    def raise_if_any(self, filename: str) -> None:
        if self._by_line:
            raise BadRows([f"line {n}, " + "; ".join(p) for n, p in sorted(self._by_line.items())], filename)


@dataclass
class Context:
    clinic: Clinic
    campaigns: dict[str, Campaign]
    filename: str


# --- reading ---------------------------------------------------------------------------------

@dataclass
class Line:
    number: int  # where the row starts in the file; the header is line 1
    cells: dict[str, str]
    width: int  # how many values the row had (more than the header is a misplaced comma)


def read_lines(path: Path) -> list[Line]:
    text = _text_of(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = check_header(next(reader, None), path.name)
        lines, previous = [], reader.line_num
        for values in reader:
            start, previous = previous + 1, reader.line_num
            if any(v.strip() for v in values):  # blank lines and `,,,` rows (spreadsheet leftovers)
                cells = {c: (values[i].strip() if i < len(values) else "") for i, c in enumerate(columns)}
                lines.append(Line(start, cells, len(values)))
    except csv.Error as error:
        raise BadInput(f"{path.name} line {reader.line_num} is not readable as CSV: {error}") from None
    if not lines:
        raise BadInput(f"{path.name} has a header but no rows to import")
    return lines


def _text_of(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path} not found") from None
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise BadInput(f"{path.name} line {line} is not UTF-8 text; save the file as \"CSV UTF-8\"") from None


def check_header(header: list[str] | None, filename: str) -> list[str]:
    """The header's column names, or one line saying which column is wrong."""
    known = ", ".join(COLUMNS)
    if not header or not any(h.strip() for h in header):
        raise BadInput(f"{filename} line 1 must name the columns; the columns are: {known}")
    names = [h.strip().lower() for h in header]
    if "" in names:
        raise BadInput(f"{filename} line 1: column {names.index('') + 1} has no name; the columns are: {known}")
    unknown = [repr(n) for n in dict.fromkeys(names) if n not in COLUMNS]
    if unknown:
        raise BadInput(f"{filename} line 1: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                       f"the columns are: {known}")
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise BadInput(f"{filename} line 1: column {twice!r} appears more than once")
    for name in REQUIRED:
        if name not in names:
            raise BadInput(f"{filename} line 1: missing column {name!r}; every patient needs a first and last name")
    if "session_at" in names and "campaign" not in names:
        raise BadInput(f"{filename} line 1: missing column 'campaign'; sessions (session_at) are booked in a campaign")
    return names


# --- one row on its own -----------------------------------------------------------------------

def _kept(text: str, ctx: Context) -> str:
    return text


def _boolean(text: str, ctx: Context) -> bool:
    if text.lower() in YES:
        return True
    if text.lower() in NO:
        return False
    raise BadInput(f"{text!r} is not yes/no, true/false, y/n or 1/0")


def _locale(text: str, ctx: Context) -> str:
    if not LOCALE.match(text):
        raise BadInput(f"{text!r} is not a locale like en, es or fr-CA")
    return text


def _campaign(text: str, ctx: Context) -> str:
    if text not in ctx.campaigns:
        raise BadInput(f"{text!r} is not a campaign in config/campaigns (known: {', '.join(sorted(ctx.campaigns))})")
    return text


CHECKS = {
    "first_name": _kept, "last_name": _kept, "preferred_name": _kept, "locale": _locale,
    "phone": lambda text, ctx: inputs.phone(text, ctx.clinic.country),
    "email": lambda text, ctx: inputs.email(text),
    "timezone": lambda text, ctx: inputs.timezone_name(text),
    "discreet": _boolean, "consent_sms": _boolean, "consent_email": _boolean, "campaign": _campaign,
    "session_at": _kept,  # read in the patient's zone, known only once the rows are gathered
    "status": lambda text, ctx: inputs.choice(text.replace("-", "_"), SESSION_STATUSES, "status"),
    "modality": _kept, "location": _kept,
    "duration": lambda text, ctx: inputs.positive_int(text, "duration"),
}


def _reason(error: BadInput, column: str) -> str:
    # inputs' messages start with what they checked ("phone '123' is ..."); the column says it already.
    text = str(error)
    return text[len(column) + 1:] if text.startswith(column + " ") else text


@dataclass
class Row:
    line: int
    external_id: str | None
    values: dict  # the non-empty cells, checked (session_at still text)
    bad: set[str]  # columns already reported, so later passes do not pile on


def check_row(line: Line, ctx: Context, problems: Problems) -> Row:
    row = Row(line.number, line.cells.get("external_id") or None, {}, set())
    if line.width > len(line.cells):
        problems.add(line.number, None, f"{line.width} values but the header names {len(line.cells)} columns "
                                        f"(a comma inside a value needs quotes)")
    for column, text in line.cells.items():
        if text and column != "external_id":
            try:
                row.values[column] = CHECKS[column](text, ctx)
            except BadInput as error:
                problems.add(line.number, column, _reason(error, column))
                row.bad.add(column)
    _check_session_cells(row, line, problems)
    return row


def _check_session_cells(row: Row, line: Line, problems: Problems) -> None:
    if "session_at" in row.values and not line.cells.get("campaign"):
        problems.add(row.line, "campaign", "empty; a session (session_at) is booked in a campaign")
    if not line.cells.get("session_at"):
        for column in SESSION_DETAILS:
            if line.cells.get(column):
                problems.add(row.line, column, f"{line.cells[column]!r} given without session_at; "
                                               f"it describes a session")


# --- the rows of one patient ------------------------------------------------------------------

@dataclass
class SessionPlan:
    line: int
    starts_at: datetime
    details: dict  # status, modality, location, duration as the file gives them
    booked: TreatmentSession | None  # the same session already in the database

    def changes(self) -> dict:
        """What the file changes on a booked session (its empty cells leave it as it is)."""
        current = {"status": self.booked.status, "modality": self.booked.modality,
                   "location": self.booked.location, "duration": self.booked.duration_minutes}
        return {k: v for k, v in self.details.items() if current[k] != v}


@dataclass
class EnrollmentPlan:
    campaign: str
    line: int
    existing: Enrollment | None
    booked: dict[datetime, TreatmentSession]
    sessions: list[SessionPlan] = field(default_factory=list)
    seen: dict[datetime, int] = field(default_factory=dict)

    def add(self, row: Row, starts_at: datetime, problems: Problems) -> None:
        if starts_at in self.seen:
            problems.add(row.line, "session_at", f"the same session as line {self.seen[starts_at]}")
            return
        self.seen[starts_at] = row.line
        details = {k: row.values[k] for k in SESSION_DETAILS if k in row.values}
        booked = self.booked.get(starts_at)
        status = details.get("status")
        if booked and status and status != booked.status and status not in STATUS_MOVES.get(booked.status, ()):
            problems.add(row.line, "status", f"session {booked.id} at that time is already {booked.status}; "
                                             f"the file cannot make it {status}")
            return
        self.sessions.append(SessionPlan(row.line, starts_at, details, booked))


@dataclass
class PatientPlan:
    line: int  # the patient's first row
    external_id: str | None
    values: dict = field(default_factory=dict)
    said_on: dict = field(default_factory=dict)  # column -> the line that gave its value
    bad: set[str] = field(default_factory=set)
    rows: list[Row] = field(default_factory=list)  # rows naming a campaign
    existing: Patient | None = None
    enrollments: dict[str, EnrollmentPlan] = field(default_factory=dict)

    def take(self, row: Row, problems: Problems) -> None:
        """One more row of this patient: its patient cells must agree with earlier rows."""
        self.bad |= row.bad
        for column, value in row.values.items():
            if column in SESSION_DETAILS or column in ("campaign", "session_at"):
                continue
            if column in self.values and self.values[column] != value:
                problems.add(row.line, column, f"differs from line {self.said_on[column]} "
                                               f"for the same external_id {self.external_id!r}")
            else:
                self.values.setdefault(column, value)
                self.said_on.setdefault(column, row.line)
        if "campaign" in row.values:
            self.rows.append(row)

    def timezone(self, clinic: Clinic) -> str:
        """Session times without an offset are read in this zone: the file's, else the patient's."""
        return self.values.get("timezone") or (self.existing.timezone if self.existing else clinic.timezone)

    def contact(self, column: str) -> str | None:
        return self.values.get(column) or (getattr(self.existing, column) if self.existing else None)

    def label(self) -> str:
        if self.existing is not None:
            return f"patient {self.existing.id} (external_id {self.external_id!r})"
        name = f"{self.values.get('first_name', '')} {self.values.get('last_name', '')}".strip()
        if self.external_id:
            return f"patient {name} (external_id {self.external_id!r})"
        return f"patient {name} (no external_id: importing this row again adds them again)"


def gather(rows: list[Row], problems: Problems) -> list[PatientPlan]:
    """Rows with the same external_id are one patient; a row without one is a patient of its own."""
    plans: list[PatientPlan] = []
    by_mrn: dict[str, PatientPlan] = {}
    for row in rows:
        plan = by_mrn.get(row.external_id) if row.external_id else None
        if plan is None:
            plan = PatientPlan(row.line, row.external_id)
            plans.append(plan)
            if row.external_id:
                by_mrn[row.external_id] = plan
        plan.take(row, problems)
    return plans


# --- against the database ---------------------------------------------------------------------

def resolve(session: Session, plans: list[PatientPlan], ctx: Context, problems: Problems) -> None:
    """Match patients by external_id, enrollments by campaign, sessions by start; check what
    only the database can tell (a new patient's names, consent without a contact, a session
    the file would move back)."""
    mrns = [p.external_id for p in plans if p.external_id]
    known = {p.external_id: p for p in session.execute(
        sa.select(Patient).where(Patient.external_id.in_(mrns))).scalars()} if mrns else {}
    for plan in plans:
        plan.existing = known.get(plan.external_id)
        _check_patient(plan, problems)
        for row in plan.rows:
            _plan_row(session, plan, row, ctx, problems)


def _check_patient(plan: PatientPlan, problems: Problems) -> None:
    if plan.existing is None:
        for column in REQUIRED:
            if column not in plan.values:
                problems.add(plan.line, column, "empty; a new patient needs a first and last name")
    for channel, (column, contact) in CONSENT_COLUMNS.items():
        if plan.values.get(column) and not plan.contact(contact) and contact not in plan.bad:
            problems.add(plan.said_on[column], column, f"yes, but the patient has no {contact} to send to")


def _plan_row(session: Session, plan: PatientPlan, row: Row, ctx: Context, problems: Problems) -> None:
    enrollment = plan.enrollments.get(row.values["campaign"])
    if enrollment is None:
        enrollment = _enrollment_plan(session, plan, row)
        plan.enrollments[enrollment.campaign] = enrollment
    if "session_at" not in row.values or "timezone" in plan.bad:
        return  # a bad zone is reported already; reading the time in another would mislead
    try:
        starts_at = inputs.local_datetime(row.values["session_at"], plan.timezone(ctx.clinic), "session_at")
    except BadInput as error:
        problems.add(row.line, "session_at", _reason(error, "session_at"))
        return
    enrollment.add(row, starts_at, problems)


def _enrollment_plan(session: Session, plan: PatientPlan, row: Row) -> EnrollmentPlan:
    """The patient's open enrollment in the campaign (sessions join it), else a new one."""
    campaign = row.values["campaign"]
    existing = None
    if plan.existing is not None:
        existing = session.execute(sa.select(Enrollment).where(
            Enrollment.patient_id == plan.existing.id, Enrollment.campaign_id == campaign,
            Enrollment.status.in_(OPEN_ENROLLMENT)).order_by(Enrollment.id.desc()).limit(1)).scalar()
    booked = {}
    if existing is not None:
        booked = {s.starts_at: s for s in session.execute(sa.select(TreatmentSession).where(
            TreatmentSession.enrollment_id == existing.id)).scalars()}
    return EnrollmentPlan(campaign, row.line, existing, booked)


# --- what it comes to, and writing it ---------------------------------------------------------

@dataclass
class Outcome:
    added: int = 0
    updated: int = 0
    enrollments: int = 0
    sessions: int = 0
    sessions_changed: int = 0
    messages: Counter = field(default_factory=Counter)  # from the replans
    actions: list[str] = field(default_factory=list)  # what a dry run would do, line by line

    def summary(self) -> str:
        changed = f" ({self.sessions_changed} changed)" if self.sessions_changed else ""
        return (f"{self.added} patients added, {self.updated} updated, {self.enrollments} enrollments, "
                f"{self.sessions} sessions{changed}")


def tally(plans: list[PatientPlan]) -> Outcome:
    outcome = Outcome()
    for plan in plans:
        if plan.existing is None:
            outcome.added += 1
        else:
            outcome.updated += 1
        for enrollment in plan.enrollments.values():
            outcome.enrollments += enrollment.existing is None
            outcome.sessions += sum(s.booked is None for s in enrollment.sessions)
            outcome.sessions_changed += sum(bool(s.booked and s.changes()) for s in enrollment.sessions)
    return outcome


def describe(plans: list[PatientPlan], ctx: Context) -> list[str]:
    """One line per thing a dry run would create or change, with the file line it comes from."""
    actions = []
    for plan in plans:
        consent = [c for c, (column, _) in CONSENT_COLUMNS.items() if plan.values.get(column)]
        consent_text = f", consent {' '.join(consent)}" if consent else ""
        actions.append(f"line {plan.line}: {'update' if plan.existing else 'add'} {plan.label()}{consent_text}")
        tz_name = plan.timezone(ctx.clinic)
        for e in plan.enrollments.values():
            actions.append(f"line {e.line}:   " + (f"in enrollment {e.existing.id} ({e.campaign})" if e.existing
                                                   else f"enroll in {e.campaign}"))
            for s in e.sessions:
                actions.append(f"line {s.line}:     " + _describe_session(s, tz_name))
    return actions


def _describe_session(s: SessionPlan, tz_name: str) -> str:
    when = s.starts_at.astimezone(zone(tz_name)).strftime("%a %Y-%m-%d %H:%M %Z")
    if s.booked is None:
        return f"book session {when} ({s.details.get('status', 'scheduled')})"
    changes = s.changes()
    if not changes:
        return f"session {s.booked.id} {when}: already booked, unchanged"
    return f"session {s.booked.id} {when}: " + ", ".join(f"{k} -> {v}" for k, v in changes.items())


def apply(session: Session, plans: list[PatientPlan], rt, ctx: Context, by: str, now: datetime) -> Counter:
    """Write every patient, consent, enrollment and session, and replan each patient."""
    messages: Counter = Counter()
    for plan in plans:
        patient = _write_patient(session, plan, ctx, now)
        _write_consent(session, plan, patient, ctx, by, now)
        for enrollment in plan.enrollments.values():
            _write_enrollment(session, patient, enrollment, now)
        messages.update(rt.replan(session, patient, by, now).counts)
    return messages


def _write_patient(session: Session, plan: PatientPlan, ctx: Context, now: datetime) -> Patient:
    fields = {k: v for k, v in plan.values.items() if k in PATIENT_FIELDS}
    patient = plan.existing
    if patient is None:
        patient = new_patient(session, {**fields, "external_id": plan.external_id}, now, clinic=ctx.clinic)
    else:
        change_patient(session, patient, fields)
    return patient


def _write_consent(session: Session, plan: PatientPlan, patient: Patient, ctx: Context, by: str,
                   now: datetime) -> None:
    """A yes grants, an explicit no revokes, an empty cell leaves consent as it is; what is
    already in force is not written again (the consent writer's rule), so re-importing a
    file adds no rows."""
    for channel, (column, _) in CONSENT_COLUMNS.items():
        said = plan.values.get(column)
        if said is not None:
            give_consent(session, patient, channel, said, now, source="import", by=by,
                         evidence=f"import {ctx.filename} line {plan.said_on[column]}")


def _write_enrollment(session: Session, patient: Patient, plan: EnrollmentPlan, now: datetime) -> None:
    enrollment = plan.existing
    if enrollment is None:
        enrollment = new_enrollment(session, patient.id, plan.campaign, now)
    for s in plan.sessions:
        if s.booked is None:
            session.add(TreatmentSession(
                enrollment_id=enrollment.id, starts_at=s.starts_at, status=s.details.get("status", "scheduled"),
                duration_minutes=s.details.get("duration", DEFAULT_DURATION),
                modality=s.details.get("modality"), location=s.details.get("location")))
            continue
        for key, value in s.changes().items():
            setattr(s.booked, "duration_minutes" if key == "duration" else key, value)
        session.add(s.booked)
    session.flush()


# --- the use case -----------------------------------------------------------------------------

def import_file(rt, path: Path, *, by: str, dry_run: bool = False) -> Outcome:
    """All or nothing: every bad row raises BadRows (nothing written); a dry run only reads."""
    ctx = Context(rt.clinic, rt.campaigns, path.name)
    problems = Problems()
    rows = [check_row(line, ctx, problems) for line in read_lines(path)]
    plans = gather(rows, problems)
    # Checks and writes share one transaction: what was checked is what gets written.
    with (Session(rt.engine) if dry_run else transaction(rt.engine)) as session:
        resolve(session, plans, ctx, problems)
        problems.raise_if_any(path.name)
        outcome = tally(plans)
        if dry_run:
            outcome.actions = describe(plans, ctx)
        else:
            outcome.messages = apply(session, plans, rt, ctx, by, rt.clock.now())
    return outcome
