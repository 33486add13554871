"""Send pacing (SPEC 7 "Rate"): no one-second window at the provider holds more sends
than the rate, counting every worker of the deployment together.

Sends are spaced evenly (a cell-rate pacer), never released in bursts: a burst that fits
the rate when it leaves arrives bunched, and the provider counts arrivals. The spacing
keeps a margin, so a send that starts up to `TOLERANCE` late after its slot, plus a few
milliseconds of jitter on the way, still leaves every window within the rate. Right
before the provider is called the sender asks `may_start`: one process knows every send
it started, so a send waits there until the last second (jitter margin included) holds
room for it, and a late one goes only when it does; the shared pacer cannot see the other
workers' sends, so there a send more than `TOLERANCE` late is not sent late: its caller
puts the message back for a new slot.

- `SendRate` paces one process (SQLite serves one worker; email; the demo's virtual clock).
- `SharedRate` paces every worker on PostgreSQL through one row per channel, taken with
  a single conditional UPDATE on the database server's clock, so the workers' own clocks
  never need to agree. Each worker places the server's slots on its own timeline through
  an offset read apart from the UPDATE (the fastest of a few plain clock readings): the
  UPDATE may wait for another worker's row lock, and a reading taken across that wait
  would put the slots early, into another worker's sends.

Slots are instants on the pacer's own timeline (`now()`); callers wait with `wait_until`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

MARGIN = 1.07  # spacing stretched by 7%: room for TOLERANCE and jitter in every window
# Several workers: a send starts late on a busy worker, or a slot's reading of the server's
# clock is off by a round trip, and another worker's on-time send is right behind it.
SHARED_MARGIN = 1.15
TOLERANCE = 0.03  # seconds a send may start after its slot
JITTER = 0.05  # seconds between a start here and its arrival at the provider, at worst
# Above this, a rate is "out of the way" (no SMS or email sender takes a thousand a second
# from one account): a late send is not put back for it.
NO_LIMIT = 1000.0
CLOCK_CHECK = 30.0  # seconds between two readings of the database server's clock
CLOCK_READINGS = 3  # readings per check; the fastest round trip places the clock best


def spacing(per_second: float, margin: float = MARGIN) -> float:
    """Seconds between two sends. Above 1/s the window holds a whole number of sends, so
    2.5/s paces as 2/s: a third send would put three into some second."""
    if not per_second > 0:
        raise ValueError(f"send rate must be above zero, not {per_second!r}")
    allowed = math.floor(per_second) if per_second >= 1 else per_second
    return margin / allowed


class Pacer(Protocol):
    per_second: float
    tolerance: float

    def now(self) -> float: ...

    def reserve(self, count: int, lead: float = 0.0) -> list[float]: ...

    def wait_until(self, instant: float, stopping: threading.Event | None = None) -> bool: ...

    def may_start(self, slot: float) -> bool: ...

    def give_back(self, slots: list[float]) -> None: ...


class SendRate:
    """One process's pacer. `now` and `wait` may be injected: the demo and tests run it on
    a virtual clock, where waiting moves the clock instead of sleeping."""

    def __init__(self, per_second: float, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None, wait: Callable[[float], None] | None = None,
                 tolerance: float = TOLERANCE):
        self.per_second = per_second
        self.spacing = spacing(per_second)
        self.tolerance = tolerance
        self._now, self._sleep, self._wait = now, sleep, wait
        self._next = -math.inf
        self._lock = threading.Lock()
        self._allowed = max(1, math.floor(per_second)) if per_second >= 1 else 1
        self._window = 1.0 if per_second >= 1 else 1.0 / per_second
        self._started: deque[float] = deque(maxlen=self._allowed)  # the latest actual starts

    def now(self) -> float:
        return self._now()

    def reserve(self, count: int, lead: float = 0.0) -> list[float]:
        """The next `count` free slots, in order, none sooner than `lead` seconds from now
        (the time the caller needs to check the messages before they go)."""
        with self._lock:
            start = max(self._now() + lead, self._next)
            self._next = start + count * self.spacing
        return [start + i * self.spacing for i in range(count)]

    def give_back(self, slots: list[float]) -> None:
        """The last slots of a reservation, not used (their messages were closed or held at
        the check): free again if nobody reserved after them."""
        if not slots:
            return
        with self._lock:
            if abs(self._next - (slots[-1] + self.spacing)) < 1e-9:
                self._next = slots[0]

    def wait_until(self, instant: float, stopping: threading.Event | None = None) -> bool:
        """Block until `instant`; False when `stopping` was set first."""
        delay = instant - self._now()
        if delay <= 0:
            return not (stopping and stopping.is_set())
        if self._wait is not None:
            self._wait(instant)
        elif self._sleep is not None:
            self._sleep(delay)
        elif stopping is not None:
            return not stopping.wait(delay)
        else:
            time.sleep(delay)
        return not (stopping and stopping.is_set())

    def may_start(self, slot: float) -> bool:
        """True (and the start noted) when starting now keeps every window within the rate.
        On time, it waits, if it must, until the last second (jitter margin included) has
        room: a send that went a little late leaves a little less room behind it. Late, it
        goes only if the room is already there."""
        while True:
            with self._lock:
                now = self._now()
                room_at = self._room_at()
                if now >= room_at:
                    self._started.append(now)
                    return True
                if now > slot + self.tolerance:
                    return False
            self.wait_until(room_at)

    def _room_at(self) -> float:
        """The instant from which one more start keeps the last window within the rate."""
        if len(self._started) < self._allowed:
            return -math.inf
        return self._started[0] + self._window + JITTER


class SharedRate(SendRate):
    """Every worker's pacer for one channel, through the `send_rate` row on PostgreSQL."""

    def may_start(self, slot: float) -> bool:
        # The other workers' starts are not known here: only a send on time may go, unless
        # the rate is beyond any sender's (then it only spaces the sends, as a courtesy).
        return self.per_second > NO_LIMIT or self.now() <= slot + self.tolerance

    _TAKE = sa.text(
        "UPDATE send_rate SET next_at = GREATEST(next_at, clock_timestamp() AT TIME ZONE 'UTC' "
        "+ make_interval(secs => :lead)) + make_interval(secs => :span) WHERE channel = :channel "
        "RETURNING next_at")
    _CREATE = sa.text("INSERT INTO send_rate (channel, next_at) VALUES (:channel, clock_timestamp() "
                      "AT TIME ZONE 'UTC') ON CONFLICT (channel) DO NOTHING")

    def __init__(self, engine: Engine, channel: str, per_second: float, tolerance: float = TOLERANCE):
        super().__init__(per_second, tolerance=tolerance)
        self.engine, self.channel = engine, channel
        self.spacing = spacing(per_second, SHARED_MARGIN)
        self._end: tuple[float, object] | None = None
        self._offset: tuple[float, float] | None = None  # (server minus ours, when read)

    _GIVE_BACK = sa.text("UPDATE send_rate SET next_at = next_at - make_interval(secs => :span) "
                         "WHERE channel = :channel AND next_at = :end")

    def give_back(self, slots: list[float]) -> None:
        if not slots or self._end is None or abs(self._end[0] - (slots[-1] + self.spacing)) > 1e-6:
            return
        with self.engine.begin() as connection:  # only if no worker reserved after us
            connection.execute(self._GIVE_BACK, {"span": len(slots) * self.spacing, "channel": self.channel,
                                                 "end": self._end[1]})

    _CLOCK = sa.text("SELECT clock_timestamp() AT TIME ZONE 'UTC'")

    def _server_offset(self) -> float:
        """Server clock (seconds since the epoch) minus ours, from the fastest of a few
        plain readings, none waiting on a lock; read again every `CLOCK_CHECK` seconds."""
        asked = time.monotonic()
        if self._offset is not None and asked - self._offset[1] < CLOCK_CHECK:
            return self._offset[0]
        readings = []
        with self.engine.connect() as connection:
            for _ in range(CLOCK_READINGS):
                before = time.monotonic()
                server = _epoch_seconds(connection.execute(self._CLOCK).scalar_one())
                after = time.monotonic()
                readings.append((after - before, server - (before + after) / 2))
        self._offset = (min(readings)[1], asked)
        return self._offset[0]

    def reserve(self, count: int, lead: float = 0.0) -> list[float]:
        offset = self._server_offset()
        span = count * self.spacing
        taking = {"span": span, "lead": lead, "channel": self.channel}
        with self.engine.begin() as connection:
            row = connection.execute(self._TAKE, taking).first()
            if row is None:  # the first send of this channel anywhere
                connection.execute(self._CREATE, {"channel": self.channel})
                row = connection.execute(self._TAKE, taking).first()
        end = row[0]
        first = _epoch_seconds(end) - offset - span
        self._end = (first + span, end)  # where this reservation ends, here and on the server
        return [first + i * self.spacing for i in range(count)]


_EPOCH = datetime(1970, 1, 1)


def _epoch_seconds(naive_utc: datetime) -> float:
    return (naive_utc - _EPOCH) / timedelta(seconds=1)
