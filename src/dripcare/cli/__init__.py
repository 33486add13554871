"""The `dripcare` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from dripcare.domain.inputs import BadInput
from dripcare.cli import messages, operations, patients, records, setup, templates, web
from dripcare.cli.common import fail

app = typer.Typer(
    help="dripcare: patient education by SMS and email, timed around each patient's sessions.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
app.command("init")(setup.init)
app.add_typer(setup.db_app, name="db")
app.add_typer(patients.patient_app, name="patient")
app.add_typer(patients.consent_app, name="consent")
app.command("enroll")(patients.enroll)
app.add_typer(patients.session_app, name="session")
app.add_typer(patients.enrollment_app, name="enrollment")
app.command("timeline")(messages.timeline)
app.command("outbox")(messages.outbox)
app.add_typer(messages.message_app, name="message")
app.command("replan")(messages.replan)
app.add_typer(setup.campaigns_app, name="campaigns")
app.add_typer(templates.app, name="templates")
operations.register(app)
web.register(app)
records.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line and exit 1; usage errors stay Typer's exit 2."""
    try:
        app(args=argv, prog_name="dripcare")
    except BadInput as error:
        fail(str(error))
