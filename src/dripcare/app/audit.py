"""`dripcare audit` (SPEC 9): everything that happened to one patient's consent and
messages, oldest first, for a records request: each consent change with its source,
evidence and who made it, and every event of every message (planned, moved, claimed,
sent, delivered, cancelled, ...). Message texts are not part of it: events are."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from dripcare.app.patients import find_patient
from dripcare.domain.timing import zone
from dripcare.store import consent as consent_rows
from dripcare.store import records

# At one instant a consent change comes before the message events it caused (a STOP
# revokes, then the pending texts are cancelled in the same moment).
ORDER = {"consent": 0, "message": 1}


@dataclass
class Trail:
    patient_id: int
    name: str
    timezone: str
    entries: list[dict] = field(default_factory=list)  # {at, kind, ...}, oldest first


def _at(instant: datetime, tz_name: str) -> str:
    return instant.astimezone(zone(tz_name)).isoformat()


def consent_entry(row, tz_name: str) -> dict:
    return {"at": _at(row.at, tz_name), "kind": "consent", "channel": row.channel,
            "change": "granted" if row.granted else "revoked", "contact": row.contact,
            "source": row.source, "evidence": row.evidence, "by": row.by}


def message_entry(event: records.Event, tz_name: str) -> dict:
    return {"at": _at(event.at, tz_name), "kind": "message", "message_id": event.message_id,
            "step": event.step, "channel": event.channel, "session_id": event.session_id,
            "event": event.kind, "status": event.status, "reason": event.reason,
            "detail": event.detail, "by": event.by}


def trail(rt, patient_ref: str | int) -> Trail:
    """One patient's consent changes and message events, in the order they happened."""
    with Session(rt.engine) as session:
        patient = find_patient(session, patient_ref)
        consents = consent_rows.history(session, patient.id)
        events = records.message_events(session, patient.id)
        tz_name, name = patient.timezone, f"{patient.first_name} {patient.last_name}"
    keyed = [((c.at, ORDER["consent"], c.id), consent_entry(c, tz_name)) for c in consents]
    keyed += [((e.at, ORDER["message"], e.id), message_entry(e, tz_name)) for e in events]
    return Trail(patient.id, name, tz_name, [entry for _, entry in sorted(keyed, key=lambda k: k[0])])
