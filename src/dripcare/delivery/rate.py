"""Send pacing for one worker process and channel (SPEC 7 "Rate").

No one-second window may hold more sends than the rate: a rate of 5 allows five sends in
any second, a rate of 0.5 one send in any two seconds. Each caller reserves the next free
instant under the lock and sleeps outside it, so threads are served in order and none
wakes only to find its turn taken.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class SendRate:
    def __init__(self, rate_per_second: float, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not rate_per_second > 0:
            raise ValueError(f"send rate must be above zero, not {rate_per_second!r}")
        # At least 1 send per window; a fractional rate stretches the window instead
        # (2.5/s allows 2 in any second: a third would break the one-second rule).
        self.burst = max(1, math.floor(rate_per_second))
        self.window = 1.0 if rate_per_second >= 1 else 1.0 / rate_per_second
        self._now, self._sleep = now, sleep
        self._slots: deque[float] = deque(maxlen=self.burst)  # the latest reserved send instants
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a send fits; returns the instant (on the injected clock) it was given."""
        with self._lock:
            now = self._now()
            slot = now
            if len(self._slots) == self.burst:
                slot = max(now, self._slots[0] + self.window)
            self._slots.append(slot)
        if slot > now:
            self._sleep(slot - now)
        return slot
