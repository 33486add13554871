"""channel_state: a channel paused for every worker (account errors, or staff), and why."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import ChannelState

AUTO_RESUME = timedelta(minutes=10)


def paused_channels(session: Session, now: datetime) -> dict[str, ChannelState]:
    """Channels paused now; an automatic pause lapses by itself at `until`."""
    rows = session.execute(sa.select(ChannelState).where(ChannelState.paused.is_(True))).scalars()
    return {r.channel: r for r in rows if r.until is None or r.until > now}


def pause(session: Session, channel: str, reason: str, now: datetime, until: datetime | None) -> None:
    row = session.get(ChannelState, channel) or ChannelState(channel=channel)
    row.paused, row.reason, row.since, row.until = True, reason, now, until
    session.add(row)


def resume(session: Session, channel: str) -> bool:
    row = session.get(ChannelState, channel)
    if row is None or not row.paused:
        return False
    row.paused, row.until = False, None
    session.add(row)
    return True
