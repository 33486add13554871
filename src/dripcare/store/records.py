"""Every event of one patient's messages, with what it happened to (the audit trail, SPEC 9)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import Message, MessageEvent


@dataclass(frozen=True)
class Event:
    """One message_event with what it happened to: which message, step, channel, session."""

    id: int
    at: datetime
    kind: str
    status: str
    reason: str | None
    detail: str | None
    by: str | None
    message_id: int
    step: str
    channel: str
    session_id: int | None


def message_events(session: Session, patient_id: int) -> list[Event]:
    """Every event of the patient's messages, in the order written."""
    rows = session.execute(
        sa.select(MessageEvent, Message.step_id, Message.channel, Message.session_id)
        .join(Message, MessageEvent.message_id == Message.id)
        .where(Message.patient_id == patient_id)
        .order_by(MessageEvent.id)).all()
    return [Event(e.id, e.at, e.kind, e.status, e.reason, e.detail, e.by, e.message_id, step, channel, session_id)
            for e, step, channel, session_id in rows]
