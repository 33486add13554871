"""`dripcare import` (a clinic's CSV export in, all or nothing) and `dripcare report` (counts out)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from sqlmodel import Session

from dripcare.app import importer
from dripcare.app import report as reporting
from dripcare.config.logs import counts_text
from dripcare.cli.common import console, err_console, iso, print_json, runtime, who

IMPORT_HELP = """Import patients, enrollments and sessions from a CSV file: all or nothing.

UTF-8 CSV (a BOM and CRLF line ends are fine); line 1 names the columns.
Every bad row is named (line, column, reason) and nothing is written.

\b
Columns (first_name, last_name required; campaign too with session_at):
  external_id   the clinic's MRN: a known one updates that patient; rows
                with the same one are one patient with several sessions;
                a row without one always adds a new patient
  first_name, last_name, preferred_name
  phone         without +country code: the clinic's country
  email
  timezone      IANA zone, e.g. America/Toronto (default: the clinic's)
  locale        template locale, e.g. en or es (default: the clinic's)
  discreet, consent_sms, consent_email
                yes/no, true/false, y/n, 1/0, any case; empty is no
                (for a known patient: unchanged); consent no revokes
  campaign      campaign id: enrolls the patient unless already enrolled
  session_at    ISO 8601, the patient's zone unless it carries an offset
  status        scheduled, completed, cancelled, no_show (empty:
                scheduled; unchanged for a session already booked)
  modality, location
  duration      minutes (default 60)

\b
Empty cells leave a known patient or booked session as it is.
Consent is recorded with source "import", evidence "import FILE line N".
"""


def import_csv(
    file: str = typer.Argument(..., metavar="FILE.csv", help="The CSV file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything, show what would be done, write nothing."),
    by: Optional[str] = typer.Option(None, "--by", help="Who is importing (default: your OS user)."),
):
    rt = runtime()
    try:
        outcome = importer.import_file(rt, Path(file), by=who(by), dry_run=dry_run)
    except importer.BadRows as error:
        for line in error.lines:
            err_console.print(f"error: {line}", markup=False, soft_wrap=True)
        err_console.print(f"error: {error}", markup=False, soft_wrap=True)
        sys.exit(1)
    if dry_run:
        for action in outcome.actions:
            console.print(action, markup=False, soft_wrap=True)
        console.print(f"dry run, nothing written: would import {outcome.summary()}", markup=False)
        return
    planned = counts_text(outcome.messages) or "no changes"
    console.print(f"imported {Path(file).name}: {outcome.summary()}; messages: {planned}", markup=False)


import_csv.__doc__ = IMPORT_HELP


def report(
    since: Optional[str] = typer.Option(None, "--since", metavar="DATE",
                                        help="YYYY-MM-DD, from midnight in the clinic's zone (default: 30 days ago)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
):
    """Counts since a date: messages per campaign, step and channel by state, failures by reason,
    opt-outs by source, replies by kind, deliverability. No patient data, only counts."""
    rt = runtime()
    now = rt.clock.now().replace(microsecond=0)  # a report's "until" to the second
    start = reporting.since_instant(since, now, rt.clinic.timezone)
    with Session(rt.engine) as session:
        document = reporting.build(session, start, now, rt.campaigns)
    document["since"], document["until"] = iso(start, rt.clinic.timezone), iso(now, rt.clinic.timezone)
    if as_json:
        print_json(document)
    else:
        _print_report(document)


def _print_report(d: dict) -> None:
    console.print(f"report from {d['since']} to {d['until']}")
    table = Table("campaign", "step", "channel", *reporting.REPORTED, title="messages")
    for m in d["messages"]:
        table.add_row(m["campaign"], m["step"], m["channel"], *(str(m[s]) for s in reporting.REPORTED))
    table.add_row("total", "", "", *(str(d["totals"][s]) for s in reporting.REPORTED), style="bold")
    console.print(table)
    for title, section in (("failures by reason", d["failures"]), ("opt-outs by source", d["opt_outs"]),
                           ("replies by kind", d["replies"])):
        console.print(_counts_table(title, section) if section else f"{title}: none")
    table = Table("channel", "delivered", "undelivered", "failed", "deliverability", title="deliverability")
    for channel, c in d["deliverability"].items():
        rate = "n/a (no delivery callbacks)" if c["rate"] is None else f"{c['rate']:.1%}"
        table.add_row(channel, str(c["delivered"]), str(c["undelivered"]), str(c["failed"]), rate)
    console.print(table)


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table("", "count", title=title)
    for key, n in counts.items():
        table.add_row(key, str(n))
    return table


def register(app: typer.Typer) -> None:
    app.command("import")(import_csv)
    app.command("report")(report)
