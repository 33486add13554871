"""One-click unsubscribe from care emails (SPEC 8 `/u/<token>`, RFC 8058): the link's
HMAC says which patient; a POST revokes email consent (source `email_unsubscribe`) and
cancels pending email, through the one consent writer, so a second click writes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session

from dripcare.app.patients import set_consent
from dripcare.domain.unsubscribe import read_token
from dripcare.store.models import Patient

log = logging.getLogger("dripcare.unsubscribe")


@dataclass(frozen=True)
class Subscriber:
    patient_id: int
    locale: str
    has_email: bool


def subscriber(rt, token: str, keys: list[str]) -> Subscriber | None:
    """The patient a valid token was made for; None for a forged, altered or stale one."""
    patient_id = read_token(token, keys)
    if patient_id is None:
        return None
    with Session(rt.engine) as session:
        patient = session.get(Patient, patient_id)
        if patient is None:
            return None
        return Subscriber(patient.id, patient.locale, bool(patient.email))


def unsubscribe(rt, who: Subscriber) -> None:
    """Email consent revoked for the patient's current address; nothing to do without one."""
    if not who.has_email:
        return
    set_consent(rt, str(who.patient_id), "email", False, source="email_unsubscribe", by="email",
                evidence="one-click unsubscribe")
    log.info("patient %s unsubscribed from email", who.patient_id)
