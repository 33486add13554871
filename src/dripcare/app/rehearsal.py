"""A course on a virtual clock (SPEC 2, DESIGN "Time is a parameter"): the clock jumps
from one due moment to the next and the real dispatcher runs at each, so a whole course
plays in seconds. The demo plays one; tests and benchmarks use the same loop."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone

from sqlmodel import Session

from dripcare.config.clock import VirtualClock
from dripcare.delivery.dispatch import UNCONFIRMED_GRACE
from dripcare.delivery.rate import SendRate
from dripcare.store import outbox

MOMENTS_AT_MOST = 5000  # a course has far fewer due moments; a runaway loop stops here


def next_moment(engine, now: datetime) -> datetime | None:
    with Session(engine) as session:
        return outbox.next_moment(session, now, UNCONFIRMED_GRACE)


def fast_forward(dispatcher, clock: VirtualClock, until: datetime | None = None, before_pass=None) -> Counter:
    """Jump the virtual clock from one due moment to the next, running the real dispatcher
    at each, until nothing is left to send (or `until`). Nothing sleeps."""
    total: Counter = Counter()
    for _ in range(MOMENTS_AT_MOST):
        when = next_moment(dispatcher.rt.engine, clock.now())
        if when is None or (until is not None and when > until):
            break
        clock.set(max(clock.now(), when))
        if before_pass:
            before_pass()
        total.update(dispatcher.run_pass())
    if until is not None:
        clock.set(max(clock.now(), until))
    return total


def virtual_rates(settings, clock: VirtualClock) -> dict[str, SendRate]:
    """Send pacing on the virtual clock: waiting for a slot moves the clock, not the wall,
    and no slot is ever missed (the clock waits for the sender)."""
    def now() -> float:
        return clock.now().timestamp()

    def wait(instant: float) -> None:
        clock.advance_to(datetime.fromtimestamp(instant, timezone.utc))

    return {c: SendRate(r, now=now, wait=wait, tolerance=math.inf)
            for c, r in (("sms", settings.sms_rate), ("email", settings.email_rate))}

