"""Shared set-up for dispatch tests: patients enrolled through the service, the real
dispatcher on a virtual clock, and transports that answer as a provider would."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.app import enrollments
from dripcare.app import patients
from dripcare.app.rehearsal import fast_forward, virtual_rates
from dripcare.store.models import Message, MessageEvent
from dripcare.config.settings import Settings
from dripcare.delivery.transports.base import Outgoing, TransportError
from dripcare.delivery.transports.files import FileTransport
from dripcare.app.runtime import build_dispatcher


class ScriptedTransport:
    """The transport port with a provider's answers given in advance (DESIGN: an in-memory
    adapter satisfies the same port): each answer is a TransportError or None (accepted)."""

    development = True
    name = "scripted"

    def __init__(self, channel: str, answers=()):
        self.channel = channel
        self.answers = list(answers)
        self.sent: list[Outgoing] = []
        self.accepted: dict[str, str] = {}  # body -> provider id, for lookups

    def send(self, out: Outgoing) -> str:
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, TransportError):
            if answer.kind == "ambiguous" and answer.detail == "accepted":
                self.accepted[out.body] = f"SM{out.message_id:032d}"
            raise answer
        self.sent.append(out)
        return f"scripted-{out.message_id}"

    def lookup(self, out: Outgoing, since: datetime) -> str | None:
        return self.accepted.get(out.body)


def enroll_sample(rt, *, timezone="America/New_York", sessions=("2027-03-09 09:30", "2027-03-11 07:30"),
                  phone="+1 212 555 0143", email="ana@example.org", discreet=False, campaign="ketamine-iv"):
    consent = [c for c, v in (("sms", phone), ("email", email)) if v]
    patient = patients.add_patient(rt, first_name="Ana", last_name="Diaz", phone=phone, email=email,
                                  timezone=timezone, discreet=discreet, consent=consent, by="test")
    enrollment = enrollments.enroll(rt, str(patient.id), campaign, list(sessions), by="test")
    return patient, enrollment


def make_dispatcher(rt, tmp_path: Path, transports=None, **env):
    settings = Settings({"DRIPCARE_OUTBOX_DIR": str(tmp_path / "outbox"), "DRIPCARE_SMS_TRANSPORT": "file",
                         "DRIPCARE_EMAIL_TRANSPORT": "file", "DRIPCARE_MESSAGES_DIR": str(tmp_path / "clinic/messages"),
                         **env})
    transports = transports or {"sms": FileTransport("sms", settings.outbox_dir),
                                "email": FileTransport("email", settings.outbox_dir, "care@riverbend.example")}
    return build_dispatcher(rt, settings, "test-worker", transports=transports,
                            rates=virtual_rates(settings, rt.clock))



def rows(engine, **where) -> list[Message]:
    with Session(engine) as session:
        query = sa.select(Message).order_by(Message.due_at, Message.id)
        for key, value in where.items():
            query = query.where(getattr(Message, key) == value)
        return session.execute(query).scalars().all()


def events(engine, message_id: int) -> list[str]:
    with Session(engine) as session:
        return session.execute(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message_id)
                               .order_by(MessageEvent.id)).scalars().all()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def statuses(engine) -> Counter:
    return Counter(m.status for m in rows(engine))


__all__ = ["ScriptedTransport", "enroll_sample", "make_dispatcher", "rows", "events", "jsonl", "statuses",
           "fast_forward", "timedelta", "TransportError"]
