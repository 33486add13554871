"""The `dripcare` command: one Typer app, one module per command group, the commands
grouped in the top-level help as front-desk staff and operators look for them."""

from __future__ import annotations

import inspect
from importlib.metadata import PackageNotFoundError, version as package_version
from typing import Optional

import typer

from dripcare.cli import messages, operations, patients, plain_help, records, setup, templates, web
from dripcare.cli.common import fail, fit_screen
from dripcare.domain.inputs import BadInput

plain_help.install()

# Every command has a panel; tests/acceptance/test_cli_help.py fails on one without.
PANELS = {
    "Patients and sessions": ("patient", "consent", "enroll", "session", "enrollment", "import"),
    "Messages and inbox": ("timeline", "outbox", "message", "inbox", "replan", "audit", "report"),
    "Clinic setup": ("init", "campaigns", "templates"),
    "Operations": ("status", "dispatch", "worker", "channel", "web", "db", "demo"),
}


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"dripcare {package_version('dripcare')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("dripcare (version unknown: not installed)")
        raise typer.Exit()


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def dripcare(version: Optional[bool] = typer.Option(None, "--version", is_eager=True, callback=_version,
                                                    help="Print dripcare's version and exit.")):
    """dripcare: patient education by SMS and email, timed around each patient's sessions.

    Every command answers --help. Times you type are the patient's local time.
    """


# Registered in the order the top-level help lists the panels.
app.add_typer(patients.patient_app, name="patient")
app.add_typer(patients.consent_app, name="consent")
app.command("enroll")(patients.enroll)
app.add_typer(patients.session_app, name="session")
app.add_typer(patients.enrollment_app, name="enrollment")
app.command("timeline")(messages.timeline)
app.command("outbox")(messages.outbox)
app.add_typer(messages.message_app, name="message")
app.command("replan")(messages.replan)
records.register(app)
app.command("init")(setup.init)
app.add_typer(setup.campaigns_app, name="campaigns")
app.add_typer(templates.app, name="templates")
app.add_typer(setup.db_app, name="db")
operations.register(app)
web.register(app)


def _panels(typer_app: typer.Typer) -> None:
    """Each command into its panel, listed by its first paragraph as one line of prose
    (Typer keeps a docstring's own line breaks there, which rag at 80 columns)."""
    panel_of = {name: panel for panel, names in PANELS.items() for name in names}
    for info in typer_app.registered_commands:
        info.rich_help_panel = panel_of.get(info.name, info.rich_help_panel)
        doc = inspect.getdoc(info.callback) or ""
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for info in typer_app.registered_groups:
        info.rich_help_panel = panel_of.get(info.name, info.rich_help_panel)


_panels(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line and exit 1; usage errors stay Typer's exit 2."""
    fit_screen()
    try:
        app(args=argv, prog_name="dripcare")
    except BadInput as error:
        fail(str(error))
