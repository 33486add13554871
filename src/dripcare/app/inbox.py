"""The inbox (SPEC 8, 9): SMS replies staff read and mark handled."""

from __future__ import annotations

from sqlmodel import Session

from dripcare.app.patients import get_record
from dripcare.domain.inputs import BadInput
from dripcare.store import inbound
from dripcare.store.db import transaction
from dripcare.store.inbound import InboxRow
from dripcare.store.models import InboundMessage

__all__ = ["InboxRow", "handle", "replies"]


def replies(rt, *, urgent_only: bool = False, include_handled: bool = False) -> list[InboxRow]:
    """Unhandled replies (every one with `include_handled`), unhandled and urgent first."""
    with Session(rt.engine) as session:
        return inbound.listing(session, urgent_only=urgent_only, include_handled=include_handled)


def handle(rt, reply_id: str, *, by: str, note: str | None = None) -> InboxRow:
    """Mark one reply handled, with who and when; refused when it already was."""
    with transaction(rt.engine) as session:
        row = get_record(session, InboundMessage, reply_id, "reply", "`dripcare inbox`")
        if not inbound.mark_handled(session, row.id, by, note, rt.clock.now()):
            raise BadInput(f"reply {row.id} was already handled by {row.handled_by} at "
                           f"{row.handled_at.isoformat()}; `dripcare inbox --all` shows it")
    return next(r for r in replies(rt, include_handled=True) if r.id == row.id)
