"""Patients, consent, enrollments and sessions: parse, call app/, print what changed."""

from __future__ import annotations

from typing import Optional

import typer

from dripcare.app import enrollments, patients
from dripcare.app import wording
from dripcare.cli.common import By, Json, console, iso, local, print_json, runtime, say, say_effect, table, who
from dripcare.domain.contacts import CONSENT_SOURCES
from dripcare.domain.inputs import choice, positive_int

patient_app = typer.Typer(help="Add, list, show and update patients.", no_args_is_help=True)
consent_app = typer.Typer(help="Record consent given or withdrawn, per channel.", no_args_is_help=True)
session_app = typer.Typer(help="Book, move, cancel, complete or mark a no-show for a session.", no_args_is_help=True)
enrollment_app = typer.Typer(help="Pause, resume, withdraw or complete an enrollment.", no_args_is_help=True)

PATIENT_HELP = "The patient's id, or mrn: and their MRN (mrn:MRN-1042); dripcare patient list shows both."
SESSION_HELP = "The session id, shown by dripcare timeline PATIENT and dripcare patient show PATIENT."
ENROLLMENT_HELP = "The enrollment id, shown by dripcare patient show PATIENT."
Patient = typer.Argument(..., metavar="PATIENT", help=PATIENT_HELP)


# --- how a patient and their course read ------------------------------------------------------

def patient_json(document: dict) -> dict:
    """A patient document with its times in the patient's zone (SPEC 9 JSON)."""
    result = {k: v for k, v in document.items() if k != "enrollments"}
    if "enrollments" in document:
        result["enrollments"] = [course_json(e, document["timezone"]) for e in document["enrollments"]]
    return result


def course_json(enrollment: dict, tz: str) -> dict:
    return {**enrollment, "enrolled_at": iso(enrollment["enrolled_at"], tz),
            "completed_at": iso(enrollment["completed_at"], tz),
            "sessions": [{**s, "starts_at": iso(s["starts_at"], tz)} for s in enrollment["sessions"]]}


def who_line(d: dict) -> str:
    """`Ada Moss (Addie), patient 1, MRN MRN-1`."""
    name = f"{d['first_name']} {d['last_name']}" + (f" ({d['preferred_name']})" if d["preferred_name"] else "")
    return name + f", patient {d['id']}" + (f", MRN {d['external_id']}" if d["external_id"] else "")


def contact_lines(d: dict) -> list[str]:
    """Each channel's contact and whether the patient agreed to it."""
    lines = []
    for channel, field, noun in (("sms", "phone", "phone number"), ("email", "email", "email address")):
        word = wording.CHANNEL_WORD[channel]
        value = wording.phone(d[field]) if channel == "sms" else d[field]
        if not value:
            lines.append(f"{word}: no {noun}")
            continue
        flagged = " (the provider says it cannot receive: update it)" if d[f"{field}_invalid"] else ""
        lines.append(f"{word} to {value}{flagged}: consent {'given' if d['consent'][channel] else 'not given'}")
    return lines


def print_course(course: list[dict], tz: str) -> None:
    """Each enrollment, then its sessions, with the course's numbers (`app.patients.course_of`)."""
    for e in course:
        say(f"enrollment {e['id']}: {e['campaign']}, {e['status']}, enrolled {local(e['enrolled_at'], tz)}")
        if not e["sessions"]:
            say("  no sessions booked")
            continue
        grid = table("#", "session", "starts (patient's time)", "status", "appointment")
        for s in e["sessions"]:
            grid.add_row(str(s["number"]), str(s["id"]), local(s["starts_at"], tz), s["status"].replace("_", "-"),
                         s["external_id"] or "")
        console.print(grid)


def _print_patients(documents: list[dict]) -> None:
    grid = table("id", "MRN", "name", "phone", "email", "consent", wide=("MRN", "name", "email"))
    for d in documents:
        consent = ", ".join(wording.CHANNEL_WORD[c] for c, ok in d["consent"].items() if ok) or "none"
        grid.add_row(str(d["id"]), d["external_id"] or "", f"{d['first_name']} {d['last_name']}",
                     wording.phone(d["phone"]), d["email"] or "", consent)
    console.print(grid)


# --- patients ---------------------------------------------------------------------------------

@patient_app.command("add")
def patient_add(
    first_name: str = typer.Option(..., "--first-name", metavar="NAME", help="First name, as the patient gives it."),
    last_name: str = typer.Option(..., "--last-name", metavar="NAME", help="Last name."),
    preferred_name: Optional[str] = typer.Option(None, "--preferred-name", metavar="NAME",
                                                 help="The name messages greet them by, if not the first name."),
    phone: Optional[str] = typer.Option(None, "--phone", metavar="NUMBER",
                                        help="Mobile number for SMS; without +country code, the clinic's country."),
    email: Optional[str] = typer.Option(None, "--email", metavar="ADDRESS", help="Email address."),
    timezone: Optional[str] = typer.Option(None, "--timezone", metavar="ZONE",
                                           help="Time zone, e.g. America/Toronto (default: the clinic's)."),
    locale: Optional[str] = typer.Option(None, "--locale", metavar="LANGUAGE",
                                         help="Language of the messages, e.g. en or es (default: the clinic's)."),
    discreet: bool = typer.Option(False, "--discreet", help="Texts never name the treatment or the condition."),
    external_id: Optional[str] = typer.Option(None, "--external-id", metavar="MRN",
                                              help="The clinic's record number (MRN), unique."),
    consent: list[str] = typer.Option([], "--consent", metavar="CHANNEL",
                                      help="sms or email: consent the patient gave; repeat for both."),
    consent_source: Optional[str] = typer.Option(None, "--consent-source", metavar="TEXT",
                                                 help="How consent was given, e.g. 'intake form, signed'."),
    by: Optional[str] = By, as_json: bool = Json,
):
    """Add a patient (and the consent they gave)."""
    rt = runtime()
    row = patients.add_patient(rt, first_name=first_name, last_name=last_name, preferred_name=preferred_name,
                               phone=phone, email=email, timezone=timezone, locale=locale, discreet=discreet,
                               external_id=external_id, consent=consent, consent_source=consent_source, by=who(by))
    document = patients.patient_document(rt, row.id)
    if as_json:
        print_json(patient_json({k: v for k, v in document.items() if k != "enrollments"}))
        return
    say(f"added {who_line(document)}")
    for line in contact_lines(document):
        say(line)


@patient_app.command("list")
def patient_list(as_json: bool = Json):
    """Every patient, with their id, MRN, contacts and consent."""
    documents = patients.every_patient(runtime())
    if as_json:
        print_json(documents)
    elif documents:
        _print_patients(documents)
    else:
        say("no patients yet; add one with dripcare patient add")


@patient_app.command("show")
def patient_show(patient: str = Patient, as_json: bool = Json):
    """One patient: contacts and consent, enrollments and sessions."""
    document = patients.patient_document(runtime(), patient)
    if as_json:
        print_json(patient_json(document))
        return
    say(who_line(document))
    for line in contact_lines(document):
        say(line)
    say(f"time zone: {document['timezone']}; language: {document['locale']}; "
        f"discreet: {'yes' if document['discreet'] else 'no'}")
    print_course(document["enrollments"], document["timezone"])


@patient_app.command("update")
def patient_update(
    patient: str = Patient,
    first_name: Optional[str] = typer.Option(None, "--first-name", metavar="NAME", help="New first name."),
    last_name: Optional[str] = typer.Option(None, "--last-name", metavar="NAME", help="New last name."),
    preferred_name: Optional[str] = typer.Option(None, "--preferred-name", metavar="NAME",
                                                 help="New preferred name; an empty one clears it."),
    phone: Optional[str] = typer.Option(None, "--phone", metavar="NUMBER",
                                        help="New mobile number; a new number needs SMS consent again."),
    email: Optional[str] = typer.Option(None, "--email", metavar="ADDRESS",
                                        help="New email address; a new address needs email consent again."),
    timezone: Optional[str] = typer.Option(None, "--timezone", metavar="ZONE", help="New time zone."),
    locale: Optional[str] = typer.Option(None, "--locale", metavar="LANGUAGE", help="New message language."),
    discreet: Optional[bool] = typer.Option(None, "--discreet/--not-discreet",
                                            help="Whether texts must never name the treatment or the condition."),
    external_id: Optional[str] = typer.Option(None, "--external-id", metavar="MRN", help="New MRN."),
    by: Optional[str] = By, as_json: bool = Json,
):
    """Change a patient's details; a new phone or email needs consent again."""
    rt = runtime()
    outcome = patients.update_patient(rt, patient, by=who(by), phone=phone, email=email, timezone=timezone,
                                      first_name=first_name, last_name=last_name, preferred_name=preferred_name,
                                      locale=locale, discreet=discreet, external_id=external_id)
    _patient_changed(rt, outcome, as_json, f"patient {outcome.row.id} updated")


def _patient_changed(rt, outcome, as_json: bool, line: str) -> None:
    if as_json:
        document = patients.patient_document(rt, outcome.row.id)
        say_effect(outcome.effect, json_document=patient_json({k: v for k, v in document.items()
                                                               if k != "enrollments"}))
        return
    say(line)
    say_effect(outcome.effect)


def _consent_command(granted: bool):
    def command(
        patient: str = Patient,
        channel: str = typer.Option(..., "--channel", metavar="CHANNEL", help="sms or email."),
        source: str = typer.Option("staff", "--source", metavar="SOURCE",
                                   help=f"Where it came from: {', '.join(CONSENT_SOURCES)} (default: staff)."),
        note: Optional[str] = typer.Option(None, "--note", metavar="TEXT",
                                           help="Evidence: the patient's words, the form, the call."),
        by: Optional[str] = By, as_json: bool = Json,
    ):
        rt = runtime()
        choice(source, CONSENT_SOURCES, "--source")
        outcome = patients.set_consent(rt, patient, channel, granted, source=source.strip().lower(), by=who(by),
                                       evidence=note)
        word = wording.CHANNEL_WORD[channel.strip().lower()]
        _patient_changed(rt, outcome, as_json,
                         f"patient {outcome.row.id}: {word} consent {'granted' if granted else 'revoked'}")

    command.__doc__ = ("Record that the patient gave consent on a channel; their messages are planned."
                       if granted else "Record that the patient withdrew consent; pending messages are cancelled.")
    return command


consent_app.command("grant")(_consent_command(True))
consent_app.command("revoke")(_consent_command(False))


# --- enrollments and sessions --------------------------------------------------------------------

def enrollment_json(row, tz: str) -> dict:
    return {"id": row.id, "patient_id": row.patient_id, "campaign": row.campaign_id, "status": row.status,
            "enrolled_at": iso(row.enrolled_at, tz), "completed_at": iso(row.completed_at, tz)}


def session_json(row, tz: str) -> dict:
    return {"id": row.id, "enrollment_id": row.enrollment_id, "starts_at": iso(row.starts_at, tz),
            "status": row.status, "duration_minutes": row.duration_minutes, "modality": row.modality,
            "location": row.location, "external_id": row.external_id}


Duration = typer.Option("60", "--duration", metavar="MINUTES", help="Length of each session in minutes (default 60).")
Modality = typer.Option(None, "--modality", metavar="ROUTE",
                        help="How it is given: iv, im, intranasal, sublingual or oral (the messages follow it).")
Location = typer.Option(None, "--location", metavar="PLACE", help="Where, as the patient should read it.")
Past = typer.Option(False, "--past", help="The time is in the past: record a session that already took place.")
SessionId = typer.Option(None, "--external-id", metavar="APPOINTMENT",
                         help="The practice system's appointment id for this session (unique).")


def enroll(
    patient: str = Patient,
    campaign: str = typer.Option(..., "--campaign", metavar="ID",
                                 help="The campaign id, shown by dripcare campaigns list."),
    sessions: list[str] = typer.Option([], "--session", metavar="DATETIME",
                                       help="A session's start in the patient's time, e.g. '2027-03-09 9:30'; repeat."),
    modality: Optional[str] = Modality, location: Optional[str] = Location, duration: str = Duration,
    by: Optional[str] = By, as_json: bool = Json,
):
    """Enroll a patient in a campaign, with their booked sessions."""
    rt = runtime()
    outcome = enrollments.enroll(rt, patient, campaign, sessions, by=who(by), modality=modality, location=location,
                                 duration=positive_int(duration, "--duration"))
    tz = outcome.effect.timezone
    if as_json:
        say_effect(outcome.effect, json_document=enrollment_json(outcome.row, tz))
        return
    count = wording.plural(len(sessions), "session")
    say(f"enrollment {outcome.row.id}: patient {outcome.row.patient_id} in {outcome.row.campaign_id}, {count}")
    say_effect(outcome.effect)


@session_app.command("add")
def session_add(
    patient: str = Patient,
    at: str = typer.Option(..., "--at", metavar="DATETIME",
                           help="Start in the patient's time, e.g. '2027-06-10 9:30'."),
    campaign: Optional[str] = typer.Option(None, "--campaign", metavar="ID",
                                           help="The campaign, when the patient is in several."),
    modality: Optional[str] = Modality, duration: str = Duration, location: Optional[str] = Location,
    external_id: Optional[str] = SessionId, past: bool = Past,
    by: Optional[str] = By, as_json: bool = Json,
):
    """Book a session for an enrolled patient."""
    outcome = enrollments.add_session(runtime(), patient, at, by=who(by), campaign_id=campaign, modality=modality,
                                      duration=positive_int(duration, "--duration"), location=location,
                                      external_id=external_id, past=past)
    _session_changed(outcome, as_json, "booked for")


@session_app.command("reschedule")
def session_reschedule(
    session_id: str = typer.Argument(..., metavar="SESSION", help=SESSION_HELP),
    at: str = typer.Option(..., "--at", metavar="DATETIME", help="New start in the patient's time."),
    external_id: Optional[str] = SessionId, past: bool = Past,
    by: Optional[str] = By, as_json: bool = Json,
):
    """Move a session; its messages follow the new date."""
    outcome = enrollments.change_session(runtime(), session_id, by=who(by), at=at, external_id=external_id,
                                         past=past)
    _session_changed(outcome, as_json, "moved to")


def _session_changed(outcome, as_json: bool, what: str) -> None:
    row, tz = outcome.row, outcome.effect.timezone
    if as_json:
        say_effect(outcome.effect, json_document=session_json(row, tz))
        return
    if what in ("booked for", "moved to"):
        say(f"session {row.id} {what} {local(row.starts_at, tz)}")
    else:
        say(f"session {row.id} ({local(row.starts_at, tz)}) {what}")
    say_effect(outcome.effect)


def _session_command(action: str):
    def command(session_id: str = typer.Argument(..., metavar="SESSION", help=SESSION_HELP),
                by: Optional[str] = By, as_json: bool = Json):
        outcome = enrollments.change_session(runtime(), session_id, by=who(by), action=action)
        _session_changed(outcome, as_json, {"cancel": "cancelled", "complete": "completed",
                                            "no-show": "marked a no-show"}[action])

    command.__doc__ = {"cancel": "Cancel a session; its pending messages are cancelled.",
                       "complete": "Mark a session that took place as completed.",
                       "no-show": "Mark a session the patient missed; its pending messages are cancelled."}[action]
    return command


for _action in enrollments.SESSION_ACTIONS:
    session_app.command(_action)(_session_command(_action))


def _enrollment_command(action: str):
    def command(enrollment_id: str = typer.Argument(..., metavar="ENROLLMENT", help=ENROLLMENT_HELP),
                by: Optional[str] = By, as_json: bool = Json):
        outcome = enrollments.change_enrollment(runtime(), enrollment_id, action, by=who(by))
        if as_json:
            say_effect(outcome.effect, json_document=enrollment_json(outcome.row, outcome.effect.timezone))
            return
        say(f"enrollment {outcome.row.id} ({outcome.row.campaign_id}) {outcome.row.status}")
        say_effect(outcome.effect)

    command.__doc__ = {"pause": "Pause: pending messages are cancelled until resume.",
                       "resume": "Resume: what is still ahead is planned again.",
                       "withdraw": "Withdraw: nothing more is sent.",
                       "complete": "Mark the course finished (plans the steps that wait for it)."}[action]
    return command


for _action in enrollments.ENROLLMENT_ACTIONS:
    enrollment_app.command(_action)(_enrollment_command(_action))
