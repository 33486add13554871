"""`dripcare web` (the development server) and `dripcare inbox` (what patients texted back)."""

from __future__ import annotations

import sqlalchemy as sa
import typer
from rich.table import Table
from sqlmodel import Session

from dripcare.store.models import InboundMessage, Patient
from dripcare.delivery.transports.base import mask_contact
from dripcare.cli.common import console, fail, iso, local, print_json, runtime, settings


def register(app: typer.Typer) -> None:
    app.command("web")(web)
    app.command("inbox")(inbox)


def _port(text: str) -> int:
    # Parsed here rather than by Typer so a bad value is one line and exit 1 (SPEC 9).
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        fail(f"--port {text!r} is not a port number from 1 to 65535")
    return int(value)


def web(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: str = typer.Option("8000", "--port", help="Port to listen on.")):
    """The web process on Flask's development server (Procfile: gunicorn serves it)."""
    from dripcare.config import logs
    from dripcare.config.settings import SettingsError
    from dripcare.web import create_app

    number = _port(port)
    rt = runtime()
    logs.configure(settings().log_format)
    try:
        app = create_app(settings(), runtime=rt)
    except SettingsError as error:
        fail(str(error))
    console.print(f"dripcare web on http://{host}:{number} (development server; production runs gunicorn)")
    app.run(host=host, port=number, threaded=True)


def inbox(urgent: bool = typer.Option(False, "--urgent", help="Only replies with words of crisis."),
          as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout.")):
    """SMS replies, what each was taken as; urgent first, then newest."""
    rt = runtime()
    query = (sa.select(InboundMessage, Patient.timezone).outerjoin(Patient, InboundMessage.patient_id == Patient.id)
             .order_by(InboundMessage.urgent.desc(), InboundMessage.received_at.desc(), InboundMessage.id.desc()))
    if urgent:
        query = query.where(InboundMessage.urgent.is_(True))
    with Session(rt.engine) as session:
        rows = [(m, tz or rt.clinic.timezone) for m, tz in session.execute(query).all()]
    if as_json:
        print_json([inbound_json(m, tz) for m, tz in rows])
        return
    table = Table("id", "received", "patient", "from", "taken as", "urgent", "text")
    for m, tz in rows:
        table.add_row(str(m.id), local(m.received_at, tz), str(m.patient_id or "unknown"),
                      mask_contact(m.from_number), m.taken_as, "URGENT" if m.urgent else "", m.body)
    console.print(table)


def inbound_json(m: InboundMessage, tz_name: str) -> dict:
    return {"id": m.id, "patient_id": m.patient_id, "from": mask_contact(m.from_number), "body": m.body,
            "received_at": iso(m.received_at, tz_name), "taken_as": m.taken_as, "urgent": m.urgent}
