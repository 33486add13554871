"""Patients and their consent (SPEC 5, 9): find, add, update, consent given or withdrawn.
Each change is one transaction with a replan of the patient, so the outbox is never out
of step with what staff said."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app import consent
from dripcare.app.effects import Hints, Outcome, apply
from dripcare.domain import inputs
from dripcare.domain.contacts import CHANNELS, contact_for
from dripcare.domain.inputs import BadInput
from dripcare.store import consent as consent_rows
from dripcare.store.bulk import insert_with_ids
from dripcare.store import patients as patient_rows
from dripcare.store.db import transaction
from dripcare.store.models import Patient

NAME_FIELDS = {"first_name": "--first-name", "last_name": "--last-name", "preferred_name": "--preferred-name"}


def find_patient(session: Session, ref: str | int) -> Patient:
    """A numeric id, or `mrn:<external id>` (a value that is not all digits is an external id too)."""
    text = str(ref).strip()
    if text.isascii() and text.isdigit():
        number = inputs.record_id(text, "patient")
        patient = session.get(Patient, number) if number is not None else None
    else:
        external = text[4:] if text.lower().startswith("mrn:") else text
        patient = session.execute(sa.select(Patient).where(Patient.external_id == external)).scalar()
    if patient is None:
        raise BadInput(f"no patient {text}; `dripcare patient list` shows every patient and their id")
    return patient


def get_record(session: Session, model, ref: str | int, what: str, shown_by: str):
    """A session, enrollment or message by the id staff typed; "no <what> N" otherwise."""
    number = inputs.record_id(ref, what)
    row = session.get(model, number) if number is not None else None
    if row is None:
        raise BadInput(f"no {what} {str(ref).strip()}; {shown_by} shows the ids")
    return row


def checked_values(rt, *, phone=None, email=None, timezone=None, locale=None, **names) -> dict:
    """Every given value checked before anything is written (None: not given)."""
    values = {}
    if phone is not None:
        values["phone"] = inputs.phone(phone, rt.clinic.country) if phone.strip() else None
    if email is not None:
        values["email"] = inputs.email(email) if email.strip() else None
    if timezone is not None:
        values["timezone"] = inputs.timezone_name(timezone)
    if locale is not None:
        values["locale"] = inputs.locale(locale)
    for field, value in names.items():
        if value is None:
            continue
        if field == "preferred_name" and not value.strip():
            values[field] = None  # an empty preferred name clears it
        else:
            values[field] = inputs.name(value, NAME_FIELDS[field])
    return values


def _external_id_free(session: Session, external_id: str | None, patient_id: int | None = None) -> None:
    if not external_id:
        return
    query = sa.select(Patient.id).where(Patient.external_id == external_id)
    if patient_id is not None:
        query = query.where(Patient.id != patient_id)
    if session.execute(query).scalar():
        raise BadInput(f"external id {external_id!r} already belongs to another patient")


def _patient_values(values: dict, now: datetime, clinic) -> dict:
    return dict(first_name=values["first_name"], last_name=values["last_name"],
                preferred_name=values.get("preferred_name"), external_id=values.get("external_id") or None,
                timezone=values.get("timezone") or clinic.timezone, locale=values.get("locale") or clinic.locale,
                discreet=bool(values.get("discreet")), phone=values.get("phone"), email=values.get("email"),
                phone_invalid=False, email_invalid=False, created_at=now)


def new_patient(session: Session, values: dict, now: datetime, *, clinic) -> Patient:
    """A patient row from checked values (add and import alike)."""
    patient = Patient(**_patient_values(values, now, clinic))
    session.add(patient)
    session.flush()
    return patient


def new_patients(session: Session, many: list[dict], now: datetime, *, clinic) -> list[Patient]:
    """Many new patients in one statement (an import). The returned patients carry their
    ids for planning and consent; they are not tracked by the session (never re-added)."""
    rows = [_patient_values(values, now, clinic) for values in many]
    ids = insert_with_ids(session, Patient.__table__, rows)
    return [Patient(id=i, **row) for i, row in zip(ids, rows)]


def add_patient(rt, *, first_name: str, last_name: str, preferred_name: str | None = None,
                phone: str | None = None, email: str | None = None, timezone: str | None = None,
                locale: str | None = None, discreet: bool = False, external_id: str | None = None,
                consent: list[str] = (), consent_source: str | None = None, by: str) -> Patient:
    values = checked_values(rt, phone=phone, email=email, timezone=timezone, locale=locale,
                            first_name=first_name, last_name=last_name, preferred_name=preferred_name)
    channels = [inputs.choice(c, CHANNELS, "--consent") for c in consent]
    values.update(discreet=discreet, external_id=(external_id or "").strip() or None)
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        _external_id_free(session, values["external_id"])
        patient = new_patient(session, values, now, clinic=rt.clinic)
        for channel in dict.fromkeys(channels):
            give_consent(session, patient, channel, True, now, source="staff", by=by,
                         evidence=consent_source or "recorded at patient add")
        return patient


def give_consent(session: Session, patient: Patient, channel: str, granted: bool, now: datetime, *,
                 source: str, by: str, evidence: str | None) -> bool:
    return consent.give(session, patient, channel, granted, now, source=source, by=by, evidence=evidence)


def update_patient(rt, ref: str, *, by: str, phone=None, email=None, timezone=None, locale=None,
                   first_name=None, last_name=None, preferred_name=None, discreet=None,
                   external_id=None) -> Outcome[Patient]:
    """Changing a phone or email clears its invalid flag and needs consent again (SPEC 5)."""
    values = checked_values(rt, phone=phone, email=email, timezone=timezone, locale=locale,
                            first_name=first_name, last_name=last_name, preferred_name=preferred_name)
    if discreet is not None:
        values["discreet"] = discreet
    if external_id is not None:
        values["external_id"] = external_id.strip() or None

    def act(session, patient, now, hints: Hints):
        _external_id_free(session, values.get("external_id"), patient.id)
        had = consent_rows.consent_in_force(session, patient)
        old = {c: contact_for(patient, c) for c in CHANNELS}
        change_patient(session, patient, values)
        held = consent_rows.consent_in_force(session, patient)
        hints.dropped.update(c for c in CHANNELS if had[c] and not held[c] and old[c] != contact_for(patient, c))
        return patient

    return change(rt, ref, by, act)


def change(rt, ref: str | int, by: str | None, act) -> Outcome:
    """Find the patient, apply `act`, replan and say what it did: all or nothing, at one
    instant (a step due at the change itself is planned at it, not a moment later)."""
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        return apply(rt, session, find_patient(session, ref), by, now, act)


def change_patient(session: Session, patient: Patient, values: dict) -> None:
    """A new phone or email clears its invalid flag; consent does not follow it (SPEC 5)."""
    if "phone" in values and values["phone"] != patient.phone:
        patient.phone_invalid = False
    if "email" in values and values["email"] != patient.email:
        patient.email_invalid = False
    for key, value in values.items():
        setattr(patient, key, value)
    session.add(patient)
    session.flush()


def set_consent(rt, ref: str, channel: str, granted: bool, *, source: str, by: str,
                evidence: str | None = None) -> Outcome[Patient]:
    """Consent given or withdrawn for the patient's current contact; planned again."""
    channel = inputs.choice(channel, CHANNELS, "--channel")

    def act(session, patient, now, hints):
        give_consent(session, patient, channel, granted, now, source=source, by=by, evidence=evidence)
        return patient

    return change(rt, ref, by, act)


def current_consent(session: Session, patient: Patient) -> dict[str, bool]:
    return consent_rows.consent_in_force(session, patient)


# --- what staff look up -----------------------------------------------------------------------

def document(patient: Patient, consent_now: dict[str, bool]) -> dict:
    """A patient as `patient add|show|list --json` print it (SPEC 9)."""
    return {"id": patient.id, "external_id": patient.external_id, "first_name": patient.first_name,
            "last_name": patient.last_name, "preferred_name": patient.preferred_name, "phone": patient.phone,
            "email": patient.email, "timezone": patient.timezone, "locale": patient.locale,
            "discreet": patient.discreet, "consent": consent_now,
            "phone_invalid": patient.phone_invalid, "email_invalid": patient.email_invalid}


def every_patient(rt) -> list[dict]:
    """Every patient, their consent read in one statement (an import leaves thousands)."""
    with Session(rt.engine) as session:
        rows = patient_rows.every_patient(session)
        consent_now = consent_rows.in_force_for(session, rows)
        return [document(p, consent_now[p.id]) for p in rows]


def patient_document(rt, ref: str | int) -> dict:
    """One patient, with their consent, enrollments and sessions (times left as instants)."""
    with Session(rt.engine) as session:
        patient = find_patient(session, ref)
        result = document(patient, current_consent(session, patient))
        result["enrollments"] = course_of(session, patient.id)
        return result


def course_of(session: Session, patient_id: int) -> list[dict]:
    """The patient's enrollments, each with its sessions, numbered through the whole course
    in the order they are listed: the one numbering `patient show`, `timeline` and the
    page all give (a second enrollment's sessions go on from the first's)."""
    result, n = [], 0
    for e in patient_rows.enrollments_of(session, patient_id):
        sessions = []
        for s in patient_rows.sessions_of(session, e.id):
            n += 1
            sessions.append({"id": s.id, "number": n, "starts_at": s.starts_at, "status": s.status,
                             "duration_minutes": s.duration_minutes, "modality": s.modality, "location": s.location,
                             "external_id": s.external_id})
        result.append({"id": e.id, "campaign": e.campaign_id, "status": e.status, "enrolled_at": e.enrolled_at,
                       "completed_at": e.completed_at, "sessions": sessions})
    return result
