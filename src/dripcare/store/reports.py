"""The counts `dripcare report` shows (SPEC 9): group-by queries over messages, consent and
replies. Counts only: no query here returns a name, a contact or a text."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import Consent, Enrollment, InboundMessage, Message


def _in_window(since: datetime):
    # A message counts when it was due in the window, or went out in it (a retry, a late send).
    return sa.or_(Message.due_at >= since, Message.sent_at >= since)


def _campaign_patients(campaign: str):
    return sa.select(Enrollment.patient_id).where(Enrollment.campaign_id == campaign)


def message_counts(session: Session, since: datetime, campaign: str | None) -> list[tuple[str, str, str, str, int]]:
    """(campaign, step, channel, status, count) of the messages in the window."""
    query = (sa.select(Enrollment.campaign_id, Message.step_id, Message.channel, Message.status, sa.func.count())
             .join(Enrollment, Message.enrollment_id == Enrollment.id).where(_in_window(since))
             .group_by(Enrollment.campaign_id, Message.step_id, Message.channel, Message.status))
    if campaign is not None:
        query = query.where(Enrollment.campaign_id == campaign)
    return [tuple(r) for r in session.execute(query).all()]


def failure_reasons(session: Session, since: datetime, statuses: tuple[str, ...],
                    campaign: str | None) -> dict[str, int]:
    """Messages in `statuses` by reason (the provider's code, or max_attempts)."""
    query = (sa.select(Message.reason, sa.func.count()).where(_in_window(since), Message.status.in_(statuses))
             .group_by(Message.reason))
    if campaign is not None:
        query = query.where(Message.enrollment_id.in_(
            sa.select(Enrollment.id).where(Enrollment.campaign_id == campaign)))
    return dict(sorted((reason or "unknown", n) for reason, n in session.execute(query).all()))


def revocations(session: Session, since: datetime, campaign: str | None) -> list[tuple[datetime, str]]:
    """(when, source) of every consent withdrawn in the window, oldest first."""
    query = sa.select(Consent.at, Consent.source).where(Consent.granted.is_(False), Consent.at >= since)
    if campaign is not None:
        query = query.where(Consent.patient_id.in_(_campaign_patients(campaign)))
    return [tuple(r) for r in session.execute(query.order_by(Consent.at, Consent.id)).all()]


def reply_kinds(session: Session, since: datetime, campaign: str | None) -> dict[str, int]:
    """Replies received in the window, by what they were taken as."""
    query = (sa.select(InboundMessage.taken_as, sa.func.count()).where(InboundMessage.received_at >= since)
             .group_by(InboundMessage.taken_as))
    if campaign is not None:
        query = query.where(InboundMessage.patient_id.in_(_campaign_patients(campaign)))
    return dict(session.execute(query).all())


def campaign_used(session: Session, campaign: str) -> bool:
    """Whether any enrollment is in the campaign (its file may be gone; its history is not)."""
    return session.execute(sa.select(Enrollment.id).where(Enrollment.campaign_id == campaign).limit(1)).first() \
        is not None
