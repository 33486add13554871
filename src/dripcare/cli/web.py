"""`dripcare web` (the development server) and `dripcare inbox` (what patients texted back)."""

from __future__ import annotations

from typing import Optional

import typer

from dripcare.app import inbox as replies
from dripcare.app import wording
from dripcare.cli.common import By, Json, fail, iso, local, print_json, runtime, say, settings, who

inbox_app = typer.Typer(invoke_without_command=True)
REPLY_HELP = "The reply id, shown by dripcare inbox."


def register(app: typer.Typer) -> None:
    app.command("web")(web)
    app.add_typer(inbox_app, name="inbox")


def _port(text: str) -> int:
    # Parsed here rather than by Typer so a bad value is one line and exit 1 (SPEC 9).
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        fail(f"--port {text!r} is not a port number from 1 to 65535")
    return int(value)


def web(host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS",
                                 help="Address to listen on (default 127.0.0.1, this machine only)."),
        port: str = typer.Option("8000", "--port", metavar="PORT", help="Port to listen on (default 8000).")):
    """The web process on Flask's development server (Procfile: gunicorn serves it)."""
    from dripcare.config import logs
    from dripcare.config.settings import SettingsError
    from dripcare.web import check_settings, create_app

    number = _port(port)
    try:  # every bad setting the web process uses, named at once, before anything is opened
        check_settings(settings())
    except SettingsError as error:
        fail(str(error))
    rt = runtime()
    logs.configure(settings().log_format)
    try:
        app = create_app(settings(), runtime=rt)
    except SettingsError as error:
        fail(str(error))
    say(f"dripcare web on http://{host}:{number} (development server; production runs gunicorn)")
    app.run(host=host, port=number, threaded=True)


@inbox_app.callback()
def inbox(ctx: typer.Context,
          urgent: bool = typer.Option(False, "--urgent", help="Only replies with words of crisis."),
          every: bool = typer.Option(False, "--all", help="Handled replies too, with who handled them and when."),
          as_json: bool = Json):
    """SMS replies not yet handled, urgent first, with the patient's name and number to call back."""
    if ctx.invoked_subcommand is not None:
        return
    rt = runtime()
    rows = replies.replies(rt, urgent_only=urgent, include_handled=every)
    if as_json:
        print_json([reply_json(r, r.timezone or rt.clinic.timezone) for r in rows])
        return
    if not rows:
        say("no replies waiting" if not every else "no replies")
    for r in rows:
        _print_reply(r, r.timezone or rt.clinic.timezone)


def _print_reply(r, tz: str) -> None:
    flag = "URGENT " if r.urgent else ""
    number = wording.phone(r.from_number)
    say(f"{flag}reply {r.id}, {local(r.received_at, tz)}, taken as {r.taken_as}")
    say(f"  from {r.patient_name} (patient {r.patient_id}), call back on {number}" if r.patient_id is not None
        else f"  from {number}: no patient has this number")
    say(f"  \u201c{r.body}\u201d")
    if r.handled_at is not None:
        say(f"  handled by {r.handled_by}, {local(r.handled_at, tz)}" + (f": {r.handled_note}" if r.handled_note else ""))
    say("")


def reply_json(r, tz: str) -> dict:
    return {"id": r.id, "patient_id": r.patient_id, "patient_name": r.patient_name, "from": r.from_number,
            "body": r.body, "received_at": iso(r.received_at, tz), "taken_as": r.taken_as, "urgent": r.urgent,
            "handled_at": iso(r.handled_at, tz), "handled_by": r.handled_by, "handled_note": r.handled_note}


@inbox_app.command("handle")
def inbox_handle(reply: str = typer.Argument(..., metavar="REPLY", help=REPLY_HELP),
                 by: Optional[str] = By,
                 note: Optional[str] = typer.Option(None, "--note", metavar="TEXT",
                                                    help="What was done, e.g. 'called back, spoke with Ana'.")):
    """Mark a reply handled: staff have dealt with it (it leaves the inbox)."""
    rt = runtime()
    row = replies.handle(rt, reply, by=who(by), note=note)
    say(f"reply {row.id} handled by {row.handled_by}, {local(row.handled_at, row.timezone or rt.clinic.timezone)}")
