"""The tables of SPEC 5. Every datetime is timezone-aware in Python and UTC in storage."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, hands back aware UTC: SQLite has no time zones, and a naive
    datetime reaching the database is a bug we want loud, not silently local."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} reached the database")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def utc_column(**kwargs) -> sa.Column:
    return sa.Column(UTCDateTime(), **kwargs)


class Patient(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, sa_column=sa.Column(sa.String, unique=True))
    first_name: str
    last_name: str
    preferred_name: str | None = None
    phone: str | None = Field(default=None, index=True)
    email: str | None = None
    # Set when a provider says the contact can never receive (SPEC 7); cleared when staff change it.
    phone_invalid: bool = False
    email_invalid: bool = False
    timezone: str
    locale: str
    discreet: bool = False
    created_at: datetime = Field(sa_column=utc_column(nullable=False))


class Consent(SQLModel, table=True):
    """Append-only: the latest row for (patient, channel, contact) is the consent in force."""

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    channel: str
    # The phone or email the consent was given for: a new contact needs consent again.
    contact: str
    granted: bool
    at: datetime = Field(sa_column=utc_column(nullable=False))
    source: str
    evidence: str | None = None
    by: str


class Enrollment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    campaign_id: str
    status: str = "active"
    enrolled_at: datetime = Field(sa_column=utc_column(nullable=False))
    completed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # When the SMS footer is owed again (enrollment start, or a START after STOP).
    footer_since: datetime = Field(sa_column=utc_column(nullable=False))


class TreatmentSession(SQLModel, table=True):
    __tablename__ = "treatment_session"

    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    starts_at: datetime = Field(sa_column=utc_column(nullable=False))
    duration_minutes: int = 60
    modality: str | None = None
    location: str | None = None
    status: str = "scheduled"
    # The EHR's appointment id: a daily import finds a moved appointment by it (SPEC 9).
    external_id: str | None = Field(default=None, sa_column=sa.Column(sa.String, unique=True))


class Message(SQLModel, table=True):
    """The outbox: one row per (enrollment, step, session, channel, anchor instant)."""

    __table_args__ = (
        sa.Index("ix_message_status_due", "status", "due_at"),
        # The claim reads only due `scheduled` rows: a partial index keeps its cost on the
        # batch, not on the history of every message ever sent.
        sa.Index("ix_message_scheduled_due", "due_at", postgresql_where=sa.text("status = 'scheduled'"),
                 sqlite_where=sa.text("status = 'scheduled'")),
        sa.Index("ix_message_enrollment", "enrollment_id"),
        sa.Index("ix_message_patient", "patient_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # enrollment:step:session-or-dash:channel:anchor-iso; unique so a plan is never doubled.
    plan_key: str = Field(sa_column=sa.Column(sa.String, unique=True, nullable=False))
    patient_id: int = Field(foreign_key="patient.id")
    enrollment_id: int = Field(foreign_key="enrollment.id")
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id")
    step_id: str
    channel: str
    priority: int = 50
    anchor_at: datetime = Field(sa_column=utc_column(nullable=False))
    due_at: datetime = Field(sa_column=utc_column(nullable=False))
    expires_at: datetime = Field(sa_column=utc_column(nullable=False))
    status: str = "scheduled"
    reason: str | None = None
    attempts: int = 0
    # Once claimed, a row is the dispatcher's and planning never changes it (SPEC 6 rule 10).
    ever_claimed: bool = False
    next_attempt_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    attempted_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    lease_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    claimed_by: str | None = None
    provider_id: str | None = Field(default=None, index=True)
    error: str | None = None
    to_contact: str | None = None
    subject: str | None = None
    body: str | None = None
    html: str | None = None
    footer: bool = False
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class MessageEvent(SQLModel, table=True):
    __tablename__ = "message_event"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    at: datetime = Field(sa_column=utc_column(nullable=False))
    kind: str
    status: str
    reason: str | None = None
    detail: str | None = None
    by: str | None = None


class InboundMessage(SQLModel, table=True):
    __tablename__ = "inbound_message"
    # Twilio may deliver a reply twice, to two web processes at once: one row per patient.
    __table_args__ = (sa.UniqueConstraint("provider_sid", "patient_id", name="uq_inbound_message_sid_patient"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    from_number: str
    body: str
    received_at: datetime = Field(sa_column=utc_column(nullable=False))
    taken_as: str
    urgent: bool = False
    provider_sid: str | None = None
    # Staff have dealt with it (`dripcare inbox handle`).
    handled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    handled_by: str | None = None
    handled_note: str | None = None


class Worker(SQLModel, table=True):
    id: str = Field(primary_key=True)
    hostname: str
    pid: int
    # Real time, whatever DRIPCARE_NOW says: liveness is never judged on a simulated clock.
    started_at: datetime = Field(sa_column=utc_column(nullable=False))
    heartbeat_at: datetime = Field(sa_column=utc_column(nullable=False))
    stopped_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # The simulated time at the last heartbeat, under DRIPCARE_NOW (shown beside it).
    simulated_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ChannelState(SQLModel, table=True):
    __tablename__ = "channel_state"

    channel: str = Field(primary_key=True)
    paused: bool = False
    reason: str | None = None
    since: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ConfigFile(SQLModel, table=True):
    """A clinic file (clinic.toml, a campaign) as the running processes last took it:
    its digest, and the error of a newer version they refused (SPEC 3.2, 3.3)."""

    __tablename__ = "config_file"

    name: str = Field(primary_key=True)  # "clinic.toml", "campaigns/ketamine-iv.toml"
    digest: str | None = None
    loaded_at: datetime = Field(sa_column=utc_column(nullable=False))
    error: str | None = None


class SendRate(SQLModel, table=True):
    """The next free send slot per channel, shared by every worker (SPEC 7 "Rate"): a
    worker takes slots with one conditional update, on the database server's clock."""

    __tablename__ = "send_rate"

    channel: str = Field(primary_key=True)
    next_at: datetime = Field(sa_column=utc_column(nullable=False))
