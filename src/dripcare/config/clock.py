"""One clock for every entry point: the system clock, or DRIPCARE_NOW's simulated one.

Nothing below the entry points reads the system time; they are handed a clock and
pass `now` down, so tests and the demo can travel through a whole course in seconds.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class SimulatedClock:
    """Starts at `start` and runs `speed` times faster than real time (a rehearsal)."""

    def __init__(self, start: datetime, speed: float = 1.0):
        self.start, self.speed = start, speed
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._origin) * self.speed)


class VirtualClock:
    """Moves only when told to: the demo and tests step it through a course. Send
    threads advance it while waiting for a rate slot, hence the lock."""

    speed = 1.0

    def __init__(self, start: datetime):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance_to(self, when: datetime) -> None:
        """Never backwards: several send threads may wait for their slots at once."""
        with self._lock:
            self._now = max(self._now, when)


_NOW_SPEC = re.compile(r"^\s*(?P<at>\S+)(?:\s+x(?P<speed>\d+(?:\.\d+)?))?\s*$")


def parse_now_spec(spec: str) -> tuple[datetime, float]:
    """`2027-06-09T22:01:00Z` or `2027-06-09T22:01:00Z x10`; ValueError says how to fix it."""
    match = _NOW_SPEC.match(spec)
    if not match:
        raise ValueError(f"{spec!r} is not an instant with an optional speed, e.g. 2027-06-09T22:01:00Z x10")
    try:
        at = datetime.fromisoformat(match["at"].replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{match['at']!r} is not an ISO 8601 instant, e.g. 2027-06-09T22:01:00Z") from None
    if at.tzinfo is None:
        raise ValueError(f"{match['at']!r} has no UTC offset; write it like 2027-06-09T22:01:00Z")
    speed = float(match["speed"] or 1)
    if speed <= 0:
        raise ValueError(f"speed x{match['speed']} must be above zero")
    return at.astimezone(timezone.utc), speed
