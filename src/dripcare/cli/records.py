"""`dripcare import` (a clinic's EHR export in, all or nothing), `dripcare report` (counts
out, as tables, JSON or a page of charts) and `dripcare audit` (one patient's consent
and message history, for a records request)."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from dripcare.app import audit as audits
from dripcare.app import importer, pages
from dripcare.app import report as reporting
from dripcare.cli.common import console, fail, print_json, progress_bar, runtime, say, table, who
from dripcare.cli.patients import PATIENT_HELP
from dripcare.config.logs import counts_text
from dripcare.domain.timing import zone

IMPORT_HELP = """Import patients, enrollments and sessions from a CSV file: all or nothing.

For the daily export of appointments from the clinic's EHR: importing the
same file again changes nothing; a later file moves appointments that moved
(same session_id, new time) and cancels those it marks cancelled or no_show.
A booked session the file does not list is left as it is (--dry-run lists it).

UTF-8 CSV (a BOM and CRLF line ends are fine); line 1 names the columns.
Every bad row is named (line, column, reason) and nothing is written.
docs/ehr-import.md shows how to map an EHR export to these columns.

\b
Columns (first_name, last_name required; campaign too with session_at):
  external_id   the clinic's MRN: a known one updates that patient; rows
                with the same one are one patient with several sessions;
                a row without one always adds a new patient
  first_name, last_name, preferred_name
                as the patient gives them, 1 to 100 characters
  phone         without +country code: the clinic's country
  email
  timezone      time zone name, e.g. America/Toronto (default: the clinic's)
  locale        language of the messages, e.g. en, es or fr-CA
                (default: the clinic's)
  discreet, consent_sms, consent_email
                yes/no, true/false, y/n, 1/0, any case; empty is no
                (for a known patient: unchanged); consent no revokes
  campaign      campaign id: enrolls the patient unless already enrolled
  session_id    the EHR's appointment id: a later file finds the session
                by it, even at a new time (optional; without it sessions
                are matched by their start)
  session_at    date and time, e.g. 2027-03-09 09:30, in the patient's
                zone unless it carries an offset (2027-03-09T15:30Z)
  modality, location
  duration      minutes (default 60)
  status        scheduled, completed, cancelled, no_show (empty:
                scheduled; unchanged for a session already booked)

\b
Empty cells leave a known patient or booked session as it is.
Consent is recorded with source "import", evidence "import FILE line N".
"""


def import_csv(
    file: str = typer.Argument(..., metavar="FILE.csv", help="The CSV file to import (the columns are listed above)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and show, per patient, what would be "
                                                          "created, moved and cancelled; write nothing."),
    by: Optional[str] = typer.Option(None, "--by", help="Who is importing, recorded with consent (default: your "
                                                        "login name)."),
):
    rt = runtime()
    bar = progress_bar()
    try:
        outcome = importer.import_file(rt, Path(file), by=who(by), dry_run=dry_run, progress=bar)
    except importer.BadRows as error:
        fail("\n".join([*error.lines, str(error)]))
    finally:
        if bar is not None:
            bar.close()
    if dry_run:
        for action in outcome.actions:
            console.print(action, markup=False, soft_wrap=True)
        console.print(f"dry run, nothing written: would import {outcome.summary()}", markup=False, soft_wrap=True)
        return
    planned = counts_text(outcome.messages) or "no changes"
    console.print(f"imported {Path(file).name}: {outcome.summary()}; messages: {planned}", markup=False,
                  soft_wrap=True)
    if outcome.absent:
        console.print(_absent_note(outcome.absent), markup=False, soft_wrap=True)


def _absent_note(n: int) -> str:
    several = n > 1
    return (f"note: {n} booked session{'s' if several else ''} of these patients between the file's first and last "
            f"session {'are' if several else 'is'} not in it and {'were' if several else 'was'} left as booked; "
            f"--dry-run lists them")


import_csv.__doc__ = IMPORT_HELP


def report(
    since: Optional[str] = typer.Option(None, "--since", metavar="DATE",
                                        help="Count from this day, written YYYY-MM-DD, from midnight in the "
                                             "clinic's zone (default: the last 30 days)."),
    campaign: Optional[str] = typer.Option(None, "--campaign", metavar="ID",
                                           help="Only this campaign (the ids are shown by dripcare campaigns list)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    html: Optional[str] = typer.Option(None, "--html", metavar="FILE",
                                       help="Also write the report as one web page of charts, which opens offline "
                                            "in any browser."),
):
    """How messages fared, per campaign step and channel: planned (not gone out yet), sent,
    delivered, undelivered, failed, expired, skipped, cancelled, and the delivery rate;
    opt-outs by source over time; replies by kind. Counts only, no patient data."""
    rt = runtime()
    document = reporting.build_report(rt, since, campaign)
    if html is not None:
        written = pages.write_page(html, pages.report_page(document, rt.clinic.name))
        if not as_json:
            console.print(f"wrote {written}", markup=False, soft_wrap=True)
    if as_json:
        print_json(document)
    else:
        _print_report(document)


# Two tables per campaign, so each fits 80 columns: what went out, and what did not.
WENT = ("planned", "sent", "delivered", "undelivered", "failed")
NOT_SENT = ("expired", "skipped", "cancelled")


def _print_report(d: dict) -> None:
    scope = f", campaign {d['campaign']}" if d["campaign"] else ""
    say(f"report from {d['since']} to {d['until']}{scope}")
    if not d["messages"]:
        say("messages: none in this window")
    for campaign in dict.fromkeys(m["campaign"] for m in d["messages"]):
        rows = [m for m in d["messages"] if m["campaign"] == campaign]
        for title, columns, rate in ((f"messages of {campaign} going out", WENT, True),
                                     (f"messages of {campaign} not sent", NOT_SENT, False)):
            say("")
            say(title)
            console.print(_step_table(rows, columns, rate))
    say("")
    say("totals: " + ", ".join(f"{n} {state}" for state, n in d["totals"].items()))
    for title, section in (("failures by reason", d["failures"]), ("opt-outs by source", d["opt_outs"]),
                           ("replies by kind", d["replies"])):
        say("")
        if section:
            say(title)
            console.print(_counts_table(section))
        else:
            say(f"{title}: none")
    say("")
    say("deliverability (delivered of those with a delivery report)")
    grid = table("channel", "delivered", "undelivered", "failed", "rate", wide=("rate",))
    for channel, c in d["deliverability"].items():
        rate = "n/a (no delivery callbacks)" if c["rate"] is None else _rate(c["rate"])
        grid.add_row(channel, str(c["delivered"]), str(c["undelivered"]), str(c["failed"]), rate)
    console.print(grid)


def _step_table(rows: list[dict], columns: tuple[str, ...], rate: bool):
    grid = table("step", "via", *columns, *(["rate"] if rate else []), wide=("step",))
    for m in rows:
        grid.add_row(m["step"], m["channel"], *(str(m[c]) for c in columns), *([_rate(m["rate"])] if rate else []))
    return grid


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.1%}"


def _counts_table(counts: dict[str, int]):
    grid = table("", "count")
    for key, n in counts.items():
        grid.add_row(key, str(n))
    return grid


AUDIT_WIDTH = 80
WHEN_WIDTH = 21  # "2027-03-09 09:30 EDT" and a space


def audit(
    patient: str = typer.Argument(..., metavar="PATIENT", help=PATIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of entries, oldest first."),
):
    """Everything that happened to one patient's consent and messages, oldest first: each
    consent change with its source, evidence and who made it, and every event of every
    message (planned, moved, sent, delivered, cancelled, ...). For records requests."""
    trail = audits.trail(runtime(), patient)
    if as_json:
        print_json(trail.entries)
        return
    console.print(f"audit of {trail.name} (patient {trail.patient_id}), times in {trail.timezone}",
                  markup=False, soft_wrap=True)
    if not trail.entries:
        console.print("nothing recorded yet", markup=False)
    for entry in trail.entries:
        for line in audit_lines(entry, trail.timezone):
            console.print(line, markup=False, soft_wrap=True, highlight=False)


def audit_lines(entry: dict, tz_name: str) -> list[str]:
    """One entry as lines of at most 80 columns: the local time, then what happened."""
    at = datetime.fromisoformat(entry["at"]).astimezone(zone(tz_name))
    when = at.strftime("%Y-%m-%d %H:%M %Z").ljust(WHEN_WIDTH)
    return textwrap.wrap(_audit_text(entry), AUDIT_WIDTH, initial_indent=when, subsequent_indent=" " * WHEN_WIDTH,
                         break_on_hyphens=False)


def _audit_text(e: dict) -> str:
    by = f", by {e['by']}" if e["by"] else ""
    if e["kind"] == "consent":
        evidence = f": {e['evidence']}" if e["evidence"] else ""
        return f"consent {e['channel']} {e['change']} for {e['contact']} ({e['source']}{by}){evidence}"
    session = f" session {e['session_id']}" if e["session_id"] else ""
    state = "" if e["event"] == e["status"] else f" -> {e['status']}"
    extra = "".join(f", {v}" for v in (e["reason"], e["detail"]) if v)
    return f"message {e['message_id']} {e['step']} {e['channel']}{session}: {e['event']}{state}{extra}{by}"


def register(app: typer.Typer) -> None:
    app.command("import")(import_csv)
    app.command("report")(report)
    app.command("audit")(audit)
