"""Staff pausing or resuming a channel for every worker (`dripcare channel pause|resume`);
the dispatcher and provider answers read and write the same `channel_state` rows."""

from __future__ import annotations

from datetime import datetime

from dripcare.store import channels
from dripcare.store.db import transaction



def pause(engine, channel: str, reason: str, now: datetime) -> None:
    """Paused until someone resumes it: no worker claims the channel's messages meanwhile."""
    with transaction(engine) as session:
        channels.pause(session, channel, reason, now, None)


def resume(engine, channel: str) -> bool:
    """False when the channel was not paused."""
    with transaction(engine) as session:
        return channels.resume(session, channel)
