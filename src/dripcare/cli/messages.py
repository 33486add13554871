"""The outbox as staff see it: timelines, the queue, one message by hand, replanning."""

from __future__ import annotations

from typing import Optional

import sqlalchemy as sa
import typer
from rich.table import Table
from sqlmodel import Session

from dripcare.app import messages as staff_messages
from dripcare.app import patients
from dripcare.config.logs import counts_text
from dripcare.store.models import Message, Patient, TreatmentSession
from dripcare.cli.common import console, iso, local, print_json, runtime, who

message_app = typer.Typer(help="Cancel or retry one message by hand.", no_args_is_help=True)
STATUSES = ("scheduled", "sending", "sent", "delivered", "undelivered", "failed", "unconfirmed",
            "expired", "skipped", "cancelled")


def message_json(m: Message, tz_name: str) -> dict:
    return {"id": m.id, "patient_id": m.patient_id, "enrollment_id": m.enrollment_id, "step": m.step_id,
            "channel": m.channel, "session_id": m.session_id, "status": m.status, "reason": m.reason,
            "due_at": iso(m.due_at, tz_name), "expires_at": iso(m.expires_at, tz_name),
            "next_attempt_at": iso(m.next_attempt_at, tz_name) if m.status == "scheduled" else None,
            "sent_at": iso(m.sent_at, tz_name), "attempts": m.attempts, "provider_id": m.provider_id}


def timeline_table(rows: list[tuple[Message, str]], with_patient: bool) -> Table:
    table = Table("id", *(["patient"] if with_patient else []), "due (patient's time)", "step", "channel",
                  "session", "status", "reason", "tries")
    for m, tz_name in rows:
        table.add_row(str(m.id), *([str(m.patient_id)] if with_patient else []), local(m.due_at, tz_name),
                      m.step_id, m.channel, str(m.session_id or ""), m.status, m.reason or "", str(m.attempts))
    return table


def timeline(patient: str = typer.Argument(..., help="Id, or mrn:<external id>."), as_json: bool = typer.Option(False, "--json")):
    """Every message of one patient, planned and past, in the patient's local time."""
    rt = runtime()
    with Session(rt.engine) as session:
        row = patients.find_patient(session, patient)
        messages = session.execute(sa.select(Message).where(Message.patient_id == row.id)
                                   .order_by(Message.due_at, Message.id)).scalars().all()
        numbers = _session_numbers(session, row.id)
    if as_json:
        print_json([message_json(m, row.timezone) for m in messages])
        return
    console.print(f"{row.first_name} {row.last_name} (patient {row.id}), times in {row.timezone}")
    table = timeline_table([(m, row.timezone) for m in messages], with_patient=False)
    console.print(table)
    if numbers:
        console.print("sessions: " + ", ".join(f"{sid} = #{n}" for sid, n in numbers.items()))


def _session_numbers(session: Session, patient_id: int) -> dict[int, int]:
    from dripcare.store.models import Enrollment

    rows = session.execute(sa.select(TreatmentSession.id).join(Enrollment)
                           .where(Enrollment.patient_id == patient_id)
                           .order_by(TreatmentSession.starts_at)).scalars().all()
    return {sid: n for n, sid in enumerate(rows, 1)}


def outbox(status: Optional[str] = typer.Option(None, "--status", help="Only messages in this state."),
           as_json: bool = typer.Option(False, "--json")):
    """Every message of every patient, oldest due first."""
    rt = runtime()
    query = sa.select(Message, Patient.timezone).join(Patient).order_by(Message.due_at, Message.id)
    if status is not None:
        from dripcare.domain.inputs import choice

        query = query.where(Message.status == choice(status, STATUSES, "--status"))
    with Session(rt.engine) as session:
        rows = session.execute(query).all()
    if as_json:
        print_json([message_json(m, tz) for m, tz in rows])
    else:
        console.print(timeline_table(list(rows), with_patient=True))


@message_app.command("cancel")
def message_cancel(message_id: str = typer.Argument(..., metavar="MESSAGE"), by: Optional[str] = typer.Option(None, "--by")):
    """Cancel one pending message (planning leaves it cancelled)."""
    row = staff_messages.cancel_message(runtime(), message_id, by=who(by))
    console.print(f"message {row.id} cancelled")


@message_app.command("retry")
def message_retry(message_id: str = typer.Argument(..., metavar="MESSAGE"), by: Optional[str] = typer.Option(None, "--by")):
    """Send a failed or cancelled message again, now, if it has not expired."""
    row = staff_messages.retry_message(runtime(), message_id, by=who(by))
    console.print(f"message {row.id} scheduled again")


def replan(enrollment: Optional[str] = typer.Argument(None, metavar="[ENROLLMENT]"),
           all_: bool = typer.Option(False, "--all", help="Every enrollment."),
           by: Optional[str] = typer.Option(None, "--by")):
    """Plan again (after editing a campaign file, for instance)."""
    if (enrollment is None) == (not all_):
        raise typer.BadParameter("give one ENROLLMENT or --all, not both or neither")
    changes = staff_messages.replan(runtime(), by=who(by), enrollment_id=None if all_ else enrollment)
    summary = counts_text(changes.counts) or "no changes"
    console.print(f"replanned: {summary}")
