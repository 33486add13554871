"""Twilio status callbacks (SPEC 7 "Answers after sending", 8 `POST /twilio/status`): the
row found by `m` (it finds the row even before the SID is stored), else by MessageSid;
`sent` moved to delivered / undelivered / failed and the answer's consequences applied by
app/outcomes.py, as for an answer when sending. Never backwards from a final state; a
repeated or unknown callback changes nothing."""

from __future__ import annotations

import logging

from sqlmodel import Session

from dripcare.app.outcomes import Outcomes
from dripcare.domain.statuses import CALLBACK_TO, MessageStatus as S
from dripcare.store import outbox
from dripcare.store.db import transaction
from dripcare.store.models import Message

log = logging.getLogger("dripcare.callbacks")

# Callbacks that prove Twilio took the message: enough to settle an ambiguous send.
ACCEPTED_STATUSES = ("accepted", "queued", "sending", "sent")
ROW_ID_DIGITS = 18  # an `m` longer than this is no row id of ours (and would overflow BIGINT)


def status_callback(rt, m: str, sid: str | None, status: str, code: str | None) -> None:
    status = (status or "").strip().lower()
    with transaction(rt.engine) as session:
        row = _row(session, m or "", sid)
        if row is None:
            log.info("status callback %s for an unknown message (%s)", status[:20] or "-", (sid or "no SID")[:40])
        elif status in CALLBACK_TO:
            _settle(rt, session, row, status, sid, code)
        elif status in ACCEPTED_STATUSES and row.status == S.UNCONFIRMED and (sid or row.provider_id):
            # An ambiguous send that Twilio reports it took: `sent`, so it is never sent twice.
            outbox.confirm(session, row.id, row.provider_id or sid, rt.clock.now(), detail=f"callback {sid}",
                           by="twilio")


def _row(session: Session, m: str, sid: str | None) -> Message | None:
    """A row that already holds another SID belongs to another attempt: not this callback's."""
    row = outbox.find(session, int(m)) if m.isascii() and m.isdigit() and len(m) <= ROW_ID_DIGITS else None
    if row is None and sid:
        row = outbox.by_provider_id(session, sid)
    if row is None or row.channel != "sms":
        return None
    if sid and row.provider_id and row.provider_id != sid:
        log.info("status callback for message %s names %s, not its SID %s: ignored", row.id, sid[:40], row.provider_id)
        return None
    return row


def _settle(rt, session: Session, row: Message, status: str, sid: str | None, code: str | None) -> None:
    now = rt.clock.now()
    if not outbox.settle(session, row, status, code, sid, now):
        return  # a repeat, or the row is already final
    log.info("message %s %s%s", row.id, status, f" (twilio:{code})" if code else "")
    if status != S.DELIVERED and code:
        Outcomes(rt).after_callback(session, row, code, now)
