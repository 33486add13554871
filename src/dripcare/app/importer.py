"""`dripcare import` (SPEC 9): the clinic's daily EHR export -> checked rows -> one transaction.

A bad file writes nothing and names every bad row at once, so staff fix the file in
one go rather than one error per run. Passes: read (the file and its header), check each
row on its own, gather the rows of one patient (same external_id), match them against
the database (read once for the whole file, `store/imports.py`), and `apply`: the one
write phase, in the transaction the reads ran in, so what was checked is what is written.

Sessions are matched by the EHR's appointment id (`session_id`) when the file gives one,
else by their start: so the next day's export moves a moved appointment, cancels a
cancelled one, and leaves alone one it no longer lists (an export covers a window, not
the whole history)."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from dripcare.app.enrollments import book_sessions, new_enrollments
from dripcare.app.consent import Wish, give_many
from dripcare.app.patients import change_patient, new_patients
from dripcare.config.clinic import Clinic
from dripcare.domain import inputs
from dripcare.domain.campaign import Campaign
from dripcare.domain.inputs import BadInput
from dripcare.domain.statuses import OPEN_ENROLLMENT, SESSION_STATUSES
from dripcare.domain.timing import zone
from dripcare.store import imports
from dripcare.store.db import transaction
from dripcare.store.models import Enrollment, Patient, TreatmentSession

COLUMNS = ("external_id", "first_name", "last_name", "preferred_name", "phone", "email", "timezone", "locale",
           "discreet", "consent_sms", "consent_email", "campaign", "session_id", "session_at", "modality",
           "location", "duration", "status")
REQUIRED = ("first_name", "last_name")
NAMES = ("first_name", "last_name", "preferred_name")
PATIENT_FIELDS = (*NAMES, "phone", "email", "timezone", "locale", "discreet")
CONSENT_COLUMNS = {"sms": ("consent_sms", "phone"), "email": ("consent_email", "email")}
SESSION_DETAILS = ("status", "modality", "location", "duration")
SESSION_COLUMNS = ("campaign", "session_id", "session_at", *SESSION_DETAILS)
SESSION_FIELD = {"status": "status", "modality": "modality", "location": "location", "duration": "duration_minutes"}
YES, NO = ("yes", "true", "y", "1"), ("no", "false", "n", "0")
# A file may move a booked session on (as `dripcare session` does), never back: an old
# export re-imported must not reopen a session the clinic has since closed.
STATUS_MOVES = {"scheduled": SESSION_STATUSES, "no_show": ("completed",)}
CANCELLING = ("cancelled", "no_show")
APPLY_SLICE = 500  # patients written and planned together: large enough for bulk statements, small in memory
DEFAULT_DURATION = 60
APPOINTMENT_LIMIT = 100
# A header cell that reads like a column name may be quoted back; anything else may be a
# patient's data (a first line that is not a header) and is named by position only.
COLUMN_LIKE = re.compile(r"^[a-z][a-z0-9_ .-]{0,39}$")
PROGRESS_AFTER = 300  # rows: a smaller file is done before a progress bar would help

Progress = Callable[[str, int, int], None]  # (what, done, total)


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
    now: datetime


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
    except IsADirectoryError:
        raise BadInput(f"{path} is a folder, not a CSV file") from None
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise BadInput(f"{path.name} line {line} is not UTF-8 text; save the file as \"CSV UTF-8\"") from None


def check_header(header: list[str] | None, filename: str) -> list[str]:
    """The header's column names, or one line saying what is wrong with it. A first line
    that names hardly any column is data, not a header: it is never quoted (SPEC 10)."""
    known = ", ".join(COLUMNS)
    if not header or not any(h.strip() for h in header):
        raise BadInput(f"{filename} line 1 must name the columns; the columns are: {known}")
    names = [h.strip().lower() for h in header]
    given = [n for n in names if n]
    if 2 * sum(n in COLUMNS for n in given) < len(given):
        raise BadInput(f"{filename} line 1 is not a header: it names {sum(n in COLUMNS for n in given)} of the "
                       f"columns; add a first line that names them (the columns are: {known})")
    if "" in names:
        raise BadInput(f"{filename} line 1: column {names.index('') + 1} has no name; the columns are: {known}")
    _check_unknown(names, filename, known)
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise BadInput(f"{filename} line 1: column {twice!r} appears more than once")
    for name in REQUIRED:
        if name not in names:
            raise BadInput(f"{filename} line 1: missing column {name!r}; every patient needs a first and last name")
    for column in ("session_at", "session_id"):
        if column in names and "campaign" not in names:
            raise BadInput(f"{filename} line 1: missing column 'campaign'; sessions ({column}) are booked in a campaign")
    if "session_id" in names and "session_at" not in names:
        raise BadInput(f"{filename} line 1: missing column 'session_at'; a session_id names a session at a time")
    return names


def _check_unknown(names: list[str], filename: str, known: str) -> None:
    unknown: dict[str, int] = {}
    for position, name in enumerate(names, 1):
        if name not in COLUMNS:
            unknown.setdefault(name, position)
    quoted = [repr(n) for n in unknown if COLUMN_LIKE.match(n)]
    unquoted = [str(i) for n, i in unknown.items() if not COLUMN_LIKE.match(n)]
    what = []
    if quoted:
        what.append(f"unknown column{'s' if len(quoted) > 1 else ''} {', '.join(quoted)}")
    if unquoted:
        what.append(f"the heading of column{'s' if len(unquoted) > 1 else ''} {', '.join(unquoted)} "
                    f"{'are' if len(unquoted) > 1 else 'is'} not a column name")
    if what:
        raise BadInput(f"{filename} line 1: {'; '.join(what)}; the columns are: {known}")


# --- one row on its own -----------------------------------------------------------------------

def _boolean(text: str, ctx: Context) -> bool:
    if text.lower() in YES:
        return True
    if text.lower() in NO:
        return False
    raise BadInput(f"{text!r} is not yes/no, true/false, y/n or 1/0")


def _campaign(text: str, ctx: Context) -> str:
    if text not in ctx.campaigns:
        raise BadInput(f"{text!r} is not a campaign in config/campaigns (known: {', '.join(sorted(ctx.campaigns))})")
    return text


def _appointment(text: str, ctx: Context) -> str:
    """The EHR's appointment id, kept as the EHR wrote it (it is the key a later export matches)."""
    if len(text) > APPOINTMENT_LIMIT:
        raise BadInput(f"is {len(text)} characters long; at most {APPOINTMENT_LIMIT}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in text):
        raise BadInput("contains an unprintable character; export the appointment id again")
    return text


def _kept(text: str, ctx: Context) -> str:
    return text


def _name(column: str):
    return lambda text, ctx: inputs.name(text, column)


CHECKS = {
    **{column: _name(column) for column in NAMES},
    "locale": lambda text, ctx: inputs.locale(text, "locale"),
    "phone": lambda text, ctx: inputs.phone(text, ctx.clinic.country),
    "email": lambda text, ctx: inputs.email(text),
    "timezone": lambda text, ctx: inputs.timezone_name(text),
    "discreet": _boolean, "consent_sms": _boolean, "consent_email": _boolean, "campaign": _campaign,
    "session_id": _appointment,
    "session_at": _kept,  # read in the patient's zone, known only once the rows are gathered
    # "No-show", "No show": EHRs spell it every way.
    "status": lambda text, ctx: inputs.choice(re.sub(r"[\s-]+", "_", text), SESSION_STATUSES, "status"),
    "modality": lambda text, ctx: inputs.modality(text, "modality"), "location": _kept,
    "duration": lambda text, ctx: inputs.positive_int(text, "duration"),
}
# A patient's cells repeat on each of their rows: each distinct value is checked once.
REMEMBERED = frozenset(PATIENT_FIELDS) | {"consent_sms", "consent_email", "campaign", "status"}


def _reason(error: BadInput, column: str) -> str:
    # inputs' messages start with what they checked ("phone '123' is ..."); the column says it already.
    text = str(error)
    return text[len(column) + 1:] if text.startswith(column + " ") else text


class Checker:
    """The checks of every cell; a patient's values, repeated on each of their rows, are
    checked once per distinct value."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen: dict[tuple[str, str], tuple[object, BadInput | None]] = {}

    def value(self, column: str, text: str):
        if column not in REMEMBERED:
            return CHECKS[column](text, self.ctx)
        key = (column, text)
        if key not in self._seen:
            try:
                self._seen[key] = (CHECKS[column](text, self.ctx), None)
            except BadInput as error:
                self._seen[key] = (None, error)
        value, error = self._seen[key]
        if error is not None:
            raise error
        return value


@dataclass
class Row:
    line: int
    external_id: str | None
    values: dict  # the non-empty cells, checked (session_at still text)
    bad: set[str]  # columns already reported, so later passes do not pile on


def check_row(line: Line, checker: Checker, problems: Problems) -> Row:
    row = Row(line.number, line.cells.get("external_id") or None, {}, set())
    if line.width > len(line.cells):
        problems.add(line.number, None, f"{line.width} values but the header names {len(line.cells)} columns "
                                        f"(a comma inside a value needs quotes)")
    for column, text in line.cells.items():
        if text and column != "external_id":
            try:
                row.values[column] = checker.value(column, text)
            except BadInput as error:
                problems.add(line.number, column, _reason(error, column))
                row.bad.add(column)
    _check_session_cells(row, line, problems)
    return row


def _check_session_cells(row: Row, line: Line, problems: Problems) -> None:
    if "session_at" in row.values and not line.cells.get("campaign"):
        problems.add(row.line, "campaign", "empty; a session (session_at) is booked in a campaign")
    if not line.cells.get("session_at"):
        for column in ("session_id", *SESSION_DETAILS):
            if line.cells.get(column):
                problems.add(row.line, column, f"{line.cells[column]!r} given without session_at; "
                                               f"it describes a session")


def check_rows(lines: list[Line], ctx: Context, problems: Problems, progress: Progress | None) -> list[Row]:
    checker, rows, appointments = Checker(ctx), [], {}
    for done, line in enumerate(lines, 1):
        row = check_row(line, checker, problems)
        _check_appointment_once(row, appointments, problems)
        rows.append(row)
        if progress and (done % 100 == 0 or done == len(lines)):
            progress("checking", done, len(lines))
    return rows


def _check_appointment_once(row: Row, seen: dict[str, int], problems: Problems) -> None:
    """An appointment id is one session: twice in a file is a mistake in the export."""
    appointment = row.values.get("session_id")
    if appointment is None:
        return
    if appointment in seen:
        problems.add(row.line, "session_id", f"{appointment!r} is on line {seen[appointment]} too; "
                                             f"an appointment id names one session")
        row.bad.add("session_id")
        del row.values["session_id"]
        return
    seen[appointment] = row.line


# --- the rows of one patient ------------------------------------------------------------------

@dataclass
class SessionPlan:
    line: int
    starts_at: datetime
    details: dict  # status, modality, location, duration as the file gives them
    appointment: str | None  # the EHR's appointment id, when the file gives one
    booked: TreatmentSession | None  # the same session already in the database

    def changes(self) -> dict:
        """What the file changes on a booked session (its empty cells leave it as it is)."""
        current = {"status": self.booked.status, "modality": self.booked.modality,
                   "location": self.booked.location, "duration": self.booked.duration_minutes}
        changes = {k: v for k, v in self.details.items() if current[k] != v}
        if self.booked.starts_at != self.starts_at:
            changes["starts_at"] = self.starts_at
        if self.appointment and self.booked.external_id != self.appointment:
            changes["external_id"] = self.appointment
        return changes

    def kind(self) -> str:
        """booked, moved, cancelled, changed or unchanged: what a summary counts it as."""
        if self.booked is None:
            return "booked"
        changes = self.changes()
        if changes.get("status") in CANCELLING:
            return "cancelled"
        return "moved" if "starts_at" in changes else "changed" if changes else "unchanged"


@dataclass
class EnrollmentPlan:
    campaign: str
    line: int
    existing: Enrollment | None
    booked: list[TreatmentSession]  # the existing enrollment's sessions
    sessions: list[SessionPlan] = field(default_factory=list)
    at_time: dict[datetime, int] = field(default_factory=dict)  # rows without an appointment id
    asked: bool = False  # a row named the campaign without a session: enroll anyway

    @property
    def creates(self) -> bool:
        return self.existing is None and (self.asked or any(s.booked is None for s in self.sessions))

    def booked_at(self, starts_at: datetime, appointment: str | None) -> TreatmentSession | None:
        """The session at that start: by time, for a row without an appointment id, or one
        with an id not known yet (a session staff booked by hand takes the EHR's id)."""
        return next((s for s in self.booked if s.starts_at == starts_at
                     and (appointment is None or s.external_id is None)), None)


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
    changes: dict = field(default_factory=dict)  # patient fields the file changes
    consent: list[tuple[str, bool, int]] = field(default_factory=list)  # (channel, granted, line) to record
    claimed: dict[int, int] = field(default_factory=dict)  # booked session id -> the line matching it
    absent: list[TreatmentSession] = field(default_factory=list)  # booked, in the file's window, not in it

    def take(self, row: Row, problems: Problems) -> None:
        """One more row of this patient: its patient cells must agree with earlier rows."""
        self.bad |= row.bad
        for column, value in row.values.items():
            if column in SESSION_COLUMNS:
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
        if column in self.values:
            return self.values[column]
        return getattr(self.existing, column) if self.existing else None

    def touched(self) -> bool:
        """Whether importing this patient writes anything (else it is left, and not replanned)."""
        return (self.existing is None or bool(self.changes) or bool(self.consent)
                or any(e.creates or any(s.kind() != "unchanged" for s in e.sessions)
                       for e in self.enrollments.values()))

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

def read_booked(session: Session, plans: list[PatientPlan]) -> imports.Booked:
    """One read of the database for the whole file."""
    mrns = [p.external_id for p in plans if p.external_id]
    appointments = [r.values["session_id"] for p in plans for r in p.rows if "session_id" in r.values]
    return imports.load(session, mrns, appointments)


def resolve(plans: list[PatientPlan], booked: imports.Booked, ctx: Context, problems: Problems) -> None:
    """Match patients by external_id, enrollments by campaign, sessions by appointment id
    or start; check what only the database can tell. Reads nothing more: `booked` is all."""
    for plan in plans:
        plan.existing = booked.patients.get(plan.external_id) if plan.external_id else None
        _check_patient(plan, problems)
        for row in plan.rows:
            _plan_row(plan, row, booked, ctx, problems)
        plan.changes = _patient_changes(plan)
        plan.consent = _consent_changes(plan, booked)
    _find_absent(plans, booked)


def _check_patient(plan: PatientPlan, problems: Problems) -> None:
    if plan.existing is None:
        for column in REQUIRED:
            if column not in plan.values and column not in plan.bad:
                problems.add(plan.line, column, "empty; a new patient needs a first and last name")
    for channel, (column, contact) in CONSENT_COLUMNS.items():
        if plan.values.get(column) and not plan.contact(contact) and contact not in plan.bad:
            problems.add(plan.said_on[column], column, f"yes, but the patient has no {contact} to send to")


def _patient_changes(plan: PatientPlan) -> dict:
    fields = {k: v for k, v in plan.values.items() if k in PATIENT_FIELDS}
    if plan.existing is None:
        return fields
    return {k: v for k, v in fields.items() if getattr(plan.existing, k) != v}


def _consent_changes(plan: PatientPlan, booked: imports.Booked) -> list[tuple[str, bool, int]]:
    """A yes grants, an explicit no revokes, an empty cell leaves consent as it is. What is
    already in force for the contact the patient will have is not written again."""
    changes = []
    for channel, (column, contact_column) in CONSENT_COLUMNS.items():
        said, contact = plan.values.get(column), plan.contact(contact_column)
        if said is None or not contact:
            continue
        in_force = booked.consent.get((plan.existing.id, channel, contact), False) if plan.existing else False
        if said != in_force:
            changes.append((channel, said, plan.said_on[column]))
    return changes


def _enrollment_plan(plan: PatientPlan, row: Row, booked: imports.Booked) -> EnrollmentPlan:
    """The patient's latest open enrollment in the campaign (sessions join it), else a new one."""
    campaign = row.values["campaign"]
    if campaign not in plan.enrollments:
        mine = booked.enrollments.get(plan.existing.id, []) if plan.existing else []
        existing = next((e for e in reversed(mine) if e.campaign_id == campaign
                         and e.status in OPEN_ENROLLMENT), None)
        plan.enrollments[campaign] = EnrollmentPlan(
            campaign, row.line, existing, booked.sessions.get(existing.id, []) if existing else [])
    return plan.enrollments[campaign]


def _plan_row(plan: PatientPlan, row: Row, booked: imports.Booked, ctx: Context, problems: Problems) -> None:
    enrollment = _enrollment_plan(plan, row, booked)
    if "session_at" not in row.values:
        enrollment.asked = True
        return
    if "timezone" in plan.bad or "session_id" in row.bad:
        return  # reported already; reading the time in another zone, or matching a duplicate, would mislead
    try:
        starts_at = inputs.local_datetime(row.values["session_at"], plan.timezone(ctx.clinic), "session_at")
    except BadInput as error:
        problems.add(row.line, "session_at", _reason(error, "session_at"))
        return
    appointment = row.values.get("session_id")
    session = _booked_session(plan, enrollment, row, starts_at, booked, problems)
    if session is not False and _fits(session, row, starts_at, ctx.now, plan.timezone(ctx.clinic), problems):
        details = {k: row.values[k] for k in SESSION_DETAILS if k in row.values}
        enrollment.sessions.append(SessionPlan(row.line, starts_at, details, appointment, session))


def _booked_session(plan: PatientPlan, enrollment: EnrollmentPlan, row: Row, starts_at: datetime,
                    booked: imports.Booked, problems: Problems):
    """The booked session this row is, None for a new one, False for a bad row."""
    appointment = row.values.get("session_id")
    session = booked.by_appointment.get(appointment) if appointment else None
    if session is not None:
        owner = booked.enrollment[session.enrollment_id]
        if plan.existing is None or owner.patient_id != plan.existing.id:
            problems.add(row.line, "session_id", f"{appointment!r} is a session of another patient "
                                                 f"(patient {owner.patient_id})")
            return False
        if owner.campaign_id != enrollment.campaign:
            problems.add(row.line, "session_id", f"{appointment!r} is booked in campaign {owner.campaign_id}, "
                                                 f"not {enrollment.campaign}")
            return False
    else:
        if appointment is None and starts_at in enrollment.at_time:
            problems.add(row.line, "session_at", f"the same session as line {enrollment.at_time[starts_at]}")
            return False
        if appointment is None:
            enrollment.at_time[starts_at] = row.line
        session = enrollment.booked_at(starts_at, appointment)
    if session is not None and session.id in plan.claimed:
        problems.add(row.line, "session_at", f"the same session as line {plan.claimed[session.id]}")
        return False
    if session is not None:
        plan.claimed[session.id] = row.line
    return session


def _fits(session: TreatmentSession | None, row: Row, starts_at: datetime, now: datetime, tz_name: str,
          problems: Problems) -> bool:
    """A session changes only as staff could change it (SPEC 9: `session` commands): it is
    not completed or missed before it starts, nor moved back, nor moved once it is closed."""
    status = row.values.get("status")
    if status in ("completed", "no_show") and starts_at > now:
        problems.add(row.line, "status", f"{status}, but the session has not started: it starts "
                                         f"{_local(starts_at, tz_name)}")
        return False
    if session is None:
        return True
    if status and status != session.status and status not in STATUS_MOVES.get(session.status, ()):
        problems.add(row.line, "status", f"session {session.id} is already {session.status}; "
                                         f"the file cannot make it {status}")
        return False
    if session.starts_at != starts_at and session.status != "scheduled":
        problems.add(row.line, "session_at", f"session {session.id} is {session.status}; only a scheduled "
                                             f"session can move to a new time")
        return False
    return True


def _find_absent(plans: list[PatientPlan], booked: imports.Booked) -> None:
    """Booked sessions of the file's patients, between its first and last session, that
    it does not list: left as they are (an export is a window), and shown by --dry-run."""
    starts = [s.starts_at for p in plans for e in p.enrollments.values() for s in e.sessions]
    if not starts:
        return
    first, last = min(starts), max(starts)
    for plan in plans:
        if plan.existing is None:
            continue
        for enrollment in booked.enrollments.get(plan.existing.id, []):
            plan.absent += [s for s in booked.sessions.get(enrollment.id, []) if s.status == "scheduled"
                            and first <= s.starts_at <= last and s.id not in plan.claimed]


# --- what it comes to ------------------------------------------------------------------------

@dataclass
class Outcome:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    enrollments: int = 0
    sessions: Counter = field(default_factory=Counter)  # booked, moved, cancelled, changed, unchanged
    absent: int = 0  # booked sessions the file does not list, left as they are
    messages: Counter = field(default_factory=Counter)  # from the replans
    actions: list[str] = field(default_factory=list)  # what a dry run would do, line by line

    def summary(self) -> str:
        s = self.sessions
        return (f"{self.added} patients added, {self.updated} updated, {self.unchanged} unchanged; "
                f"{self.enrollments} enrollments; sessions: {s['booked']} booked, {s['moved']} moved, "
                f"{s['cancelled']} cancelled, {s['changed']} otherwise changed")


def tally(plans: list[PatientPlan]) -> Outcome:
    outcome = Outcome()
    for plan in plans:
        if plan.existing is None:
            outcome.added += 1
        elif plan.touched():
            outcome.updated += 1
        else:
            outcome.unchanged += 1
        for enrollment in plan.enrollments.values():
            outcome.enrollments += enrollment.creates
            outcome.sessions.update(s.kind() for s in enrollment.sessions)
        outcome.absent += len(plan.absent)
    return outcome


def describe(plans: list[PatientPlan], ctx: Context) -> list[str]:
    """Per patient, one line per thing a dry run would create, move, cancel or change,
    with the file line it comes from; then the booked sessions the file does not list."""
    actions = []
    for plan in plans:
        actions.append(f"line {plan.line}: {_describe_patient(plan)}")
        tz_name = plan.timezone(ctx.clinic)
        for e in plan.enrollments.values():
            actions.append(f"line {e.line}:   " + (f"in enrollment {e.existing.id} ({e.campaign})" if e.existing
                                                   else f"enroll in {e.campaign}"))
            actions += [f"line {s.line}:     " + _describe_session(s, tz_name) for s in e.sessions]
        actions += [f"          not in this file, left as it is: session {s.id} {_local(s.starts_at, tz_name)}"
                    + (f" (session_id {s.external_id!r})" if s.external_id else "") for s in plan.absent]
    return actions


def _describe_patient(plan: PatientPlan) -> str:
    granted = [c for c, yes, _ in plan.consent if yes]
    revoked = [c for c, yes, _ in plan.consent if not yes]
    consent = (f", consent {' '.join(granted)}" if granted else "") + \
              (f", consent withdrawn {' '.join(revoked)}" if revoked else "")
    if plan.existing is None:
        return f"add {plan.label()}{consent}"
    if plan.changes:
        return f"update {plan.label()}: {', '.join(plan.changes)}{consent}"
    return f"{plan.label()}: unchanged{consent}"


def _local(instant: datetime, tz_name: str) -> str:
    return instant.astimezone(zone(tz_name)).strftime("%a %Y-%m-%d %H:%M %Z")


def _describe_session(s: SessionPlan, tz_name: str) -> str:
    when = _local(s.starts_at, tz_name)
    if s.booked is None:
        return f"book session {when} ({s.details.get('status', 'scheduled')})"
    kind, changes = s.kind(), s.changes()
    if kind == "unchanged":
        return f"session {s.booked.id} {when}: already booked, unchanged"
    head = {"moved": f"move session {s.booked.id} from {_local(s.booked.starts_at, tz_name)} to {when}",
            "cancelled": f"cancel session {s.booked.id} {when} ({changes.get('status')})",
            "changed": f"session {s.booked.id} {when}"}[kind]
    rest = {k: v for k, v in changes.items() if k != "starts_at" and not (kind == "cancelled" and k == "status")}
    return head + (": " + ", ".join(f"{k} -> {v}" for k, v in rest.items()) if rest else "")


# --- writing it: the one write phase -------------------------------------------------------------

def apply(session: Session, plans: list[PatientPlan], rt, ctx: Context, by: str, now: datetime,
          progress: Progress | None = None) -> Counter:
    """Write every patient, consent, enrollment and session the file changes, and replan
    each patient it touched, in the caller's transaction. Everything was decided before
    (`resolve`): this only writes, through the shared writers (patients, consent,
    enrollments) and the one planner (`rt.replan_many`), new rows in bulk, a slice of
    patients at a time: the planned rows of a slice are written and let go before the
    next, so a file of tens of thousands of patients needs the memory of one slice."""
    touched = [plan for plan in plans if plan.touched()]
    changes: Counter = Counter()
    for start in range(0, len(touched), APPLY_SLICE):
        part = touched[start:start + APPLY_SLICE]
        patients = _write_patients(session, part, ctx, now)
        give_many(session, [Wish(patient, channel, granted, f"import {ctx.filename} line {line}")
                            for plan, patient in zip(part, patients) for channel, granted, line in plan.consent],
                  now, source="import", by=by)
        _write_courses(session, part, patients, now)
        session.flush()
        # One replan of the slice's patients: one read of their state, one insert.
        changes.update(rt.replan_many(session, patients, by, now).counts)
        if progress:
            progress("importing", start + len(part), len(touched))
    return changes


def _write_patients(session: Session, plans: list[PatientPlan], ctx: Context, now: datetime) -> list[Patient]:
    """The patients of `plans`, in order: known ones changed, new ones added in one statement."""
    fresh = [plan for plan in plans if plan.existing is None]
    added = iter(new_patients(session, [{**plan.changes, "external_id": plan.external_id} for plan in fresh],
                              now, clinic=ctx.clinic))
    patients = []
    for plan in plans:
        if plan.existing is None:
            patients.append(next(added))
            continue
        if plan.changes:
            change_patient(session, plan.existing, plan.changes)
        patients.append(plan.existing)
    return patients


def _write_courses(session: Session, plans: list[PatientPlan], patients: list[Patient], now: datetime) -> None:
    """New enrollments and sessions in two statements; booked sessions the file changes, one by one."""
    courses = [(patient, course) for plan, patient in zip(plans, patients) for course in plan.enrollments.values()]
    fresh = [(patient, course) for patient, course in courses if course.creates]
    ids = iter(new_enrollments(session, [(patient.id, course.campaign) for patient, course in fresh], now))
    enrollment_of = {id(course): next(ids) for _, course in fresh}
    booked = []
    for _, course in courses:
        enrollment_id = enrollment_of.get(id(course)) or course.existing.id
        for s in course.sessions:
            if s.booked is None:
                booked.append(dict(enrollment_id=enrollment_id, starts_at=s.starts_at,
                                   status=s.details.get("status", "scheduled"),
                                   duration_minutes=s.details.get("duration", DEFAULT_DURATION),
                                   external_id=s.appointment, modality=s.details.get("modality"),
                                   location=s.details.get("location")))
                continue
            for key, value in s.changes().items():
                setattr(s.booked, SESSION_FIELD.get(key, key), value)
            session.add(s.booked)
    book_sessions(session, booked)


# --- the use case -----------------------------------------------------------------------------

def import_file(rt, path: Path, *, by: str, dry_run: bool = False, progress: Progress | None = None) -> Outcome:
    """All or nothing: every bad row raises BadRows (nothing written); a dry run only reads.
    `progress` hears how far the checks and the writes are, for files of more than
    PROGRESS_AFTER rows."""
    ctx = Context(rt.clinic, rt.campaigns, path.name, rt.clock.now())
    problems = Problems()
    lines = read_lines(path)
    progress = progress if len(lines) > PROGRESS_AFTER else None
    plans = gather(check_rows(lines, ctx, problems, progress), problems)
    # Checks and writes share one transaction: what was checked is what gets written.
    with (Session(rt.engine) if dry_run else transaction(rt.engine)) as session:
        resolve(plans, read_booked(session, plans), ctx, problems)
        problems.raise_if_any(path.name)
        outcome = tally(plans)
        if dry_run:
            outcome.actions = describe(plans, ctx)
        else:
            outcome.messages = apply(session, plans, rt, ctx, by, ctx.now, progress)
    return outcome

