"""The outbox as staff see it: timelines, the queue, one message by hand, replanning."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dripcare.app import messages as staff_messages
from dripcare.app import pages, timelines, wording
from dripcare.cli.common import (By, Json, console, iso, print_json, progress_bar, runtime, say, stream_json,
                                 table, who)
from dripcare.cli.patients import PATIENT_HELP, contact_lines, print_course, who_line
from dripcare.config.logs import counts_text
from dripcare.domain.inputs import positive_int
from dripcare.domain.statuses import ALL
from dripcare.domain.statuses import MessageStatus as S

message_app = typer.Typer(help="Cancel or retry one message by hand.", no_args_is_help=True)
MESSAGE_HELP = "The message id, shown by dripcare timeline PATIENT and dripcare outbox."
SHOWN = 100  # rows `outbox` prints unless --limit says otherwise


def message_json(m, tz_name: str) -> dict:
    return {"id": m.id, "patient_id": m.patient_id, "enrollment_id": m.enrollment_id, "step": m.step_id,
            "channel": m.channel, "session_id": m.session_id, "status": m.status, "reason": m.reason,
            "due_at": iso(m.due_at, tz_name), "expires_at": iso(m.expires_at, tz_name),
            "next_attempt_at": iso(m.next_attempt_at, tz_name) if m.status == S.SCHEDULED else None,
            "sent_at": iso(m.sent_at, tz_name), "attempts": m.attempts, "provider_id": m.provider_id}


def _when(m) -> object:
    # A retry or a deferral goes out at its next attempt, not at its first due time.
    return m.next_attempt_at if m.status == S.SCHEDULED and m.next_attempt_at else m.due_at


def timeline(
    patient: str = typer.Argument(..., metavar="PATIENT", help=PATIENT_HELP),
    as_json: bool = Json,
    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                        help="Also write the course as a picture: one page that opens offline."),
):
    """Every message of one patient, planned and past, in the patient's time, with why."""
    rt = runtime()
    view = timelines.timeline(rt, patient)
    if html is not None:  # before any output: a page that cannot be written is one line, exit 1
        pages.write_page(html, pages.timeline_page(view))
    tz = view.patient["timezone"]
    if as_json:
        print_json([message_json(r.message, tz) for r in view.rows])
        return
    say(f"{who_line(view.patient)}; times in {tz}")
    for line in contact_lines(view.patient):
        say(line)
    print_course(view.course, tz)
    if view.rows:
        grid = table("id", "when", "step", "via", "#", "status", "reason", wide=("step", "reason"))
        for r in view.rows:
            m = r.message
            grid.add_row(str(m.id), wording.short_when(_when(m), tz, view.now.year), m.step_id, m.channel,
                         str(r.session_number or ""), m.status, r.why or "")
        console.print(grid)
        _legend({(r.why or "").split(":")[0] for r in view.rows if r.why})
    else:
        say("no messages")
    for note in view.notes:
        say(f"note: {note}")
    if html is not None:
        say(f"wrote {html}")


def _legend(keys: set[str]) -> None:
    """What each reason word under the table means (`quiet hours: was due 04:30` is keyed `quiet hours`)."""
    keys = {k for k in keys if k in timelines.REASON_MEANS or k in ("twilio", "smtp")}
    if keys:
        say("reasons:")
    for key in sorted(keys):
        if key in ("twilio", "smtp"):
            say(f"  {key}:CODE: the provider refused it with that error code")
        elif key in timelines.REASON_MEANS:
            say(f"  {key}: {timelines.REASON_MEANS[key]}")


def outbox(
    status: list[str] = typer.Option([], "--status", metavar="STATE",
                                     help=f"Only messages in this state ({', '.join(ALL)}); repeat for several."),
    patient: Optional[str] = typer.Option(None, "--patient", metavar="PATIENT",
                                          help=f"Only this patient. {PATIENT_HELP}"),
    campaign: Optional[str] = typer.Option(None, "--campaign", metavar="ID", help="Only this campaign's messages."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DATE",
                                        help="Only messages due from this date (or date and time), clinic's time."),
    until: Optional[str] = typer.Option(None, "--until", metavar="DATE",
                                        help="Only messages due up to this date, included (or before a date and time)."),
    limit: Optional[str] = typer.Option(None, "--limit", metavar="N",
                                        help=f"Show at most N messages (default {SHOWN}; --json: every one)."),
    as_json: bool = Json,
):
    """Messages of every patient, oldest due first."""
    rt = runtime()
    chosen = staff_messages.outbox_filter(rt, statuses=status, patient=patient, campaign=campaign,
                                          since=since, until=until)
    most = positive_int(limit, "--limit") if limit is not None else None
    if as_json:
        stream_json(message_json(m, tz) for m, tz in staff_messages.outbox_rows(rt, chosen, most))
        return
    most, year = most or SHOWN, rt.clock.now().year
    grid = table("id", "patient", "when (patient's time)", "step", "via", "status", "reason", wide=("step", "reason"))
    shown = 0
    for m, tz in staff_messages.outbox_rows(rt, chosen, most):
        grid.add_row(str(m.id), str(m.patient_id), wording.short_when(_when(m), tz, year), m.step_id, m.channel,
                     m.status, m.reason or "")
        shown += 1
    if not shown:
        say("no messages")
        return
    console.print(grid)
    # Fewer rows than asked for are all there are: only a full page needs the count.
    total = staff_messages.outbox_count(rt, chosen) if shown == most else shown
    if total > shown:
        say(f"and {total - shown} more not shown ({total} in all); narrow with --status, --patient, --campaign, "
            f"--since or --until, or show more with --limit")


@message_app.command("cancel")
def message_cancel(message_id: str = typer.Argument(..., metavar="MESSAGE", help=MESSAGE_HELP),
                   by: Optional[str] = By):
    """Cancel one pending message (planning leaves it cancelled)."""
    row = staff_messages.cancel_message(runtime(), message_id, by=who(by))
    say(f"message {row.id} cancelled")


@message_app.command("retry")
def message_retry(message_id: str = typer.Argument(..., metavar="MESSAGE", help=MESSAGE_HELP),
                  by: Optional[str] = By):
    """Send a failed (or cancelled by hand) message again, now, if it has not expired."""
    row = staff_messages.retry_message(runtime(), message_id, by=who(by))
    say(f"message {row.id} scheduled again")


def replan(enrollment: Optional[str] = typer.Argument(None, metavar="ENROLLMENT",
                                                      help="The enrollment id, shown by dripcare patient show PATIENT."),
           all_: bool = typer.Option(False, "--all", help="Every enrollment."),
           by: Optional[str] = By):
    """Plan again (after editing a campaign file, for instance)."""
    if (enrollment is None) == (not all_):
        raise typer.BadParameter("give one ENROLLMENT or --all, not both or neither")
    bar = progress_bar() if all_ else None
    try:
        changes = staff_messages.replan(runtime(), by=who(by), enrollment_id=None if all_ else enrollment,
                                        progress=bar)
    finally:
        if bar:
            bar.close()
    summary = counts_text(changes.counts) or "no changes"
    say(f"replanned: {summary}")
