"""Patients, consent, enrollments and sessions: parse, call the service, print."""

from __future__ import annotations

from typing import Optional

import sqlalchemy as sa
import typer
from rich.table import Table
from sqlmodel import Session

from dripcare.app import enrollments
from dripcare.app import patients
from dripcare.store.consent import consent_in_force
from dripcare.domain.inputs import positive_int
from dripcare.store.models import Enrollment, Patient, TreatmentSession
from dripcare.cli.common import console, iso, local, print_json, runtime, who

patient_app = typer.Typer(help="Add, list, show and update patients.", no_args_is_help=True)
consent_app = typer.Typer(help="Record consent given or withdrawn, per channel.", no_args_is_help=True)
session_app = typer.Typer(help="Book, move, cancel, complete or mark a no-show for a session.", no_args_is_help=True)
enrollment_app = typer.Typer(help="Pause, resume, withdraw or complete an enrollment.", no_args_is_help=True)

By = typer.Option(None, "--by", help="Who is doing this (default: your OS user).")
Json = typer.Option(False, "--json", help="One JSON document on stdout.")


def patient_json(session: Session, patient: Patient) -> dict:
    return {"id": patient.id, "external_id": patient.external_id, "first_name": patient.first_name,
            "last_name": patient.last_name, "preferred_name": patient.preferred_name, "phone": patient.phone,
            "email": patient.email, "timezone": patient.timezone, "locale": patient.locale,
            "discreet": patient.discreet, "consent": consent_in_force(session, patient),
            "phone_invalid": patient.phone_invalid, "email_invalid": patient.email_invalid}


def _show_patients(rt, patients: list[Patient], as_json: bool, single: bool = False) -> None:
    with Session(rt.engine) as session:
        documents = [patient_json(session, p) for p in patients]
    if as_json:
        print_json(documents[0] if single else documents)
        return
    table = Table("id", "mrn", "name", "phone", "email", "zone", "consent", "discreet")
    for d in documents:
        consent = " ".join(c for c, ok in d["consent"].items() if ok) or "none"
        table.add_row(str(d["id"]), d["external_id"] or "", f"{d['first_name']} {d['last_name']}",
                      d["phone"] or "", d["email"] or "", d["timezone"], consent, "yes" if d["discreet"] else "")
    console.print(table)


@patient_app.command("add")
def patient_add(
    first_name: str = typer.Option(..., "--first-name"),
    last_name: str = typer.Option(..., "--last-name"),
    preferred_name: Optional[str] = typer.Option(None, "--preferred-name"),
    phone: Optional[str] = typer.Option(None, "--phone", help="Mobile number; without +country code, the clinic's country."),
    email: Optional[str] = typer.Option(None, "--email"),
    timezone: Optional[str] = typer.Option(None, "--timezone", help="IANA zone, e.g. America/Toronto (default: the clinic's)."),
    locale: Optional[str] = typer.Option(None, "--locale", help="Template locale, e.g. en or es (default: the clinic's)."),
    discreet: bool = typer.Option(False, "--discreet", help="SMS never name the treatment or condition."),
    external_id: Optional[str] = typer.Option(None, "--external-id", help="The clinic's MRN (unique)."),
    consent: list[str] = typer.Option([], "--consent", help="sms or email; repeat for both."),
    consent_source: Optional[str] = typer.Option(None, "--consent-source", help="How consent was given (evidence)."),
    by: Optional[str] = By, as_json: bool = Json,
):
    """Add a patient (and the consent they gave)."""
    rt = runtime()
    patient = patients.add_patient(rt, first_name=first_name, last_name=last_name, preferred_name=preferred_name,
                                  phone=phone, email=email, timezone=timezone, locale=locale, discreet=discreet,
                                  external_id=external_id, consent=consent, consent_source=consent_source, by=who(by))
    if as_json:
        _show_patients(rt, [patient], True, single=True)
    else:
        console.print(f"patient {patient.id} added")


@patient_app.command("list")
def patient_list(as_json: bool = Json):
    """Every patient."""
    rt = runtime()
    with Session(rt.engine) as session:
        patients = session.execute(sa.select(Patient).order_by(Patient.id)).scalars().all()
    _show_patients(rt, patients, as_json)


@patient_app.command("show")
def patient_show(patient: str = typer.Argument(..., help="Id, or mrn:<external id>."), as_json: bool = Json):
    """One patient, with consent, enrollments and sessions."""
    rt = runtime()
    with Session(rt.engine) as session:
        row = patients.find_patient(session, patient)
        document = patient_json(session, row)
        document["enrollments"] = _enrollments_json(session, row)
    if as_json:
        print_json(document)
        return
    _show_patients(rt, [row], False)
    for e in document["enrollments"]:
        console.print(f"enrollment {e['id']}: {e['campaign']} ({e['status']})")
        for s in e["sessions"]:
            console.print(f"  session {s['id']}: {local(s['starts_at_utc'], row.timezone)} {s['status']}")


def _enrollments_json(session: Session, patient: Patient) -> list[dict]:
    result = []
    for e in session.execute(sa.select(Enrollment).where(Enrollment.patient_id == patient.id)).scalars():
        sessions = session.execute(sa.select(TreatmentSession).where(TreatmentSession.enrollment_id == e.id)
                                   .order_by(TreatmentSession.starts_at)).scalars()
        result.append({"id": e.id, "campaign": e.campaign_id, "status": e.status,
                       "enrolled_at": iso(e.enrolled_at, patient.timezone),
                       "sessions": [{"id": s.id, "starts_at": iso(s.starts_at, patient.timezone),
                                     "starts_at_utc": s.starts_at, "status": s.status} for s in sessions]})
    return result


@patient_app.command("update")
def patient_update(
    patient: str = typer.Argument(..., help="Id, or mrn:<external id>."),
    first_name: Optional[str] = typer.Option(None, "--first-name"),
    last_name: Optional[str] = typer.Option(None, "--last-name"),
    preferred_name: Optional[str] = typer.Option(None, "--preferred-name"),
    phone: Optional[str] = typer.Option(None, "--phone", help="A new number needs consent again."),
    email: Optional[str] = typer.Option(None, "--email", help="A new address needs consent again."),
    timezone: Optional[str] = typer.Option(None, "--timezone"),
    locale: Optional[str] = typer.Option(None, "--locale"),
    discreet: Optional[bool] = typer.Option(None, "--discreet/--not-discreet"),
    external_id: Optional[str] = typer.Option(None, "--external-id"),
    by: Optional[str] = By, as_json: bool = Json,
):
    """Change a patient's details; a new phone or email needs consent again."""
    rt = runtime()
    row = patients.update_patient(rt, patient, by=who(by), phone=phone, email=email, timezone=timezone,
                                 first_name=first_name, last_name=last_name, preferred_name=preferred_name,
                                 locale=locale, discreet=discreet, external_id=external_id)
    if as_json:
        _show_patients(rt, [row], True, single=True)
    else:
        console.print(f"patient {row.id} updated")


def _consent_command(granted: bool):
    def command(
        patient: str = typer.Argument(..., help="Id, or mrn:<external id>."),
        channel: str = typer.Option(..., "--channel", help="sms or email."),
        source: str = typer.Option("staff", "--source", help="staff, import, ..."),
        note: Optional[str] = typer.Option(None, "--note", help="Evidence: the wording, the form, ..."),
        by: Optional[str] = By,
    ):
        rt = runtime()
        from dripcare.domain.contacts import CONSENT_SOURCES as SOURCES
        from dripcare.domain.inputs import choice

        choice(source, SOURCES, "--source")
        row = patients.set_consent(rt, patient, channel, granted, source=source.lower(), by=who(by), evidence=note)
        console.print(f"patient {row.id}: {channel} consent {'granted' if granted else 'revoked'}")

    command.__doc__ = f"Record that the patient {'gave' if granted else 'withdrew'} consent on a channel."
    return command


consent_app.command("grant")(_consent_command(True))
consent_app.command("revoke")(_consent_command(False))


def enroll(
    patient: str = typer.Argument(..., help="Id, or mrn:<external id>."),
    campaign: str = typer.Option(..., "--campaign", help="Campaign id from config/campaigns."),
    sessions: list[str] = typer.Option([], "--session", help="Session start, local to the patient; repeat."),
    modality: Optional[str] = typer.Option(None, "--modality", help="iv, im, intranasal, oral, ..."),
    location: Optional[str] = typer.Option(None, "--location"),
    duration: str = typer.Option("60", "--duration", help="Minutes per session."),
    by: Optional[str] = By, as_json: bool = Json,
):
    """Enroll a patient in a campaign, with their booked sessions."""
    rt = runtime()
    row = enrollments.enroll(rt, patient, campaign, sessions, by=who(by), modality=modality, location=location,
                         duration=positive_int(duration, "--duration"))
    if as_json:
        print_json({"id": row.id, "patient_id": row.patient_id, "campaign": row.campaign_id,
                    "status": row.status, "enrolled_at": iso(row.enrolled_at)})
    else:
        console.print(f"enrollment {row.id}: patient {row.patient_id} in {row.campaign_id}")


@session_app.command("add")
def session_add(
    patient: str = typer.Argument(..., help="Id, or mrn:<external id>."),
    at: str = typer.Option(..., "--at", help="Start, local to the patient, e.g. 2027-06-10 09:30."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Needed when the patient is in several."),
    modality: Optional[str] = typer.Option(None, "--modality"),
    duration: str = typer.Option("60", "--duration", help="Minutes."),
    location: Optional[str] = typer.Option(None, "--location"),
    by: Optional[str] = By,
):
    """Book a session for an enrolled patient."""
    rt = runtime()
    row = enrollments.add_session(rt, patient, at, by=who(by), campaign_id=campaign, modality=modality,
                              duration=positive_int(duration, "--duration"), location=location)
    console.print(f"session {row.id} booked")


@session_app.command("reschedule")
def session_reschedule(session_id: str = typer.Argument(..., metavar="SESSION"),
                       at: str = typer.Option(..., "--at", help="New start, local to the patient."),
                       by: Optional[str] = By):
    """Move a session; its messages follow the new date."""
    row = enrollments.change_session(runtime(), session_id, by=who(by), at=at)
    console.print(f"session {row.id} moved")


def _session_command(action: str):
    def command(session_id: str = typer.Argument(..., metavar="SESSION"), by: Optional[str] = By):
        row = enrollments.change_session(runtime(), session_id, by=who(by), action=action)
        console.print(f"session {row.id} {row.status}")

    command.__doc__ = {"cancel": "Cancel a session; its pending messages are cancelled.",
                       "complete": "Mark a session completed.",
                       "no-show": "Mark a missed session; its pending messages are cancelled."}[action]
    return command


for _action in enrollments.SESSION_ACTIONS:
    session_app.command(_action)(_session_command(_action))


def _enrollment_command(action: str):
    def command(enrollment_id: str = typer.Argument(..., metavar="ENROLLMENT"), by: Optional[str] = By):
        row = enrollments.change_enrollment(runtime(), enrollment_id, action, by=who(by))
        console.print(f"enrollment {row.id} {row.status}")

    command.__doc__ = {"pause": "Pause: pending messages are cancelled until resume.",
                       "resume": "Resume: what is still ahead is planned again.",
                       "withdraw": "Withdraw: nothing more is sent.",
                       "complete": "Mark the course finished (plans on_complete steps)."}[action]
    return command


for _action in enrollments.ENROLLMENT_ACTIONS:
    enrollment_app.command(_action)(_enrollment_command(_action))
