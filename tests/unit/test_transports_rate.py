"""SendRate: no one-second window holds more sends than the rate, under many threads."""

import threading
import time
from bisect import bisect_left

import pytest

import math

from dripcare.delivery.rate import JITTER, MARGIN, TOLERANCE, SendRate


def acquire(rate: SendRate) -> float:
    """One slot, waited for, as a sender does: the instant it was given."""
    slot = rate.reserve(1)[0]
    rate.wait_until(slot)
    return slot


class FakeTime:
    """A shared clock that only moves when a thread sleeps (never earlier than it asked)."""

    def __init__(self):
        self.t = 0.0
        self.sleeps = 0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        with self._lock:
            self.t += seconds
            self.sleeps += 1


def most_in_any_window(stamps, width):
    stamps = sorted(stamps)
    # A window starting at each send is the worst case; 1e-9 absorbs float sums like 0.1 * 3.
    return max(bisect_left(stamps, s + width - 1e-9) - i for i, s in enumerate(stamps))


def send_from_threads(rate: SendRate, total: int, threads: int = 8) -> list[float]:
    stamps, lock = [], threading.Lock()
    remaining = iter(range(total))

    def worker():
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            stamp = acquire(rate)
            with lock:
                stamps.append(stamp)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in pool)
    return stamps


@pytest.mark.parametrize("per_second, width, most", [(5, 1.0, 5), (0.5, 2.0, 1), (2.5, 1.0, 2), (1, 1.0, 1)])
def test_eight_threads_never_crowd_a_window(per_second, width, most):
    clock = FakeTime()
    stamps = send_from_threads(SendRate(per_second, now=clock.now, sleep=clock.sleep), 100)
    assert len(stamps) == 100
    assert most_in_any_window(stamps, width) <= most
    assert most_in_any_window(stamps, 1.0) <= max(1, per_second)


@pytest.mark.parametrize("per_second, allowed", [(5, 5), (0.5, 0.5), (1, 1), (2.5, 2)])
def test_one_sender_is_paced_evenly_just_under_the_rate(per_second, allowed):
    clock = FakeTime()
    rate = SendRate(per_second, now=clock.now, sleep=clock.sleep)
    stamps = [acquire(rate) for _ in range(100)]
    gaps = {round(b - a, 9) for a, b in zip(stamps, stamps[1:])}
    assert gaps == {round(MARGIN / allowed, 9)}  # evenly spaced: never a burst the provider sees bunched
    assert stamps[-1] == pytest.approx(99 * MARGIN / allowed)  # no slower than the margin asks
    assert most_in_any_window(stamps, 1.0) <= max(1, math.floor(per_second))


def test_a_late_start_still_leaves_every_window_within_the_rate():
    """Sends that start up to TOLERANCE after their slot never put rate + 1 in a second."""
    clock = FakeTime()
    rate = SendRate(10, now=clock.now, sleep=clock.sleep)
    slots = rate.reserve(200)
    late = [s + (TOLERANCE if i % 2 else 0.0) for i, s in enumerate(slots)]
    assert most_in_any_window(late, 1.0) <= 10


def test_slots_are_reserved_in_order_without_waiting():
    clock = FakeTime()
    rate = SendRate(5, now=clock.now, sleep=clock.sleep)
    slots = rate.reserve(3) + rate.reserve(2)
    assert slots == sorted(slots) and len(set(slots)) == 5
    assert clock.sleeps == 0  # reserving never blocks; the caller waits for its slot


def test_with_the_real_clock():
    rate = SendRate(50)
    started = time.monotonic()
    stamps = send_from_threads(rate, 60, threads=4)
    assert most_in_any_window(stamps, 1.0) <= 50
    assert time.monotonic() - started >= 59 * MARGIN / 50 - 0.01  # paced, not released at once


@pytest.mark.parametrize("bad", [0, -1])
def test_rate_must_be_positive(bad):
    with pytest.raises(ValueError):
        SendRate(bad)


def test_a_late_start_goes_only_when_the_last_second_has_room():
    clock = FakeTime()
    rate = SendRate(2, now=clock.now, sleep=clock.sleep)
    first, second, third = rate.reserve(3)  # 0, 0.535, 1.07
    clock.sleep(0.3)
    assert rate.may_start(first)  # late, but nothing went in the last second
    clock.sleep(0.3)
    assert rate.may_start(second)  # late, and one send in the last second: room for a second one
    clock.sleep(0.6)
    assert clock.now() > third + rate.tolerance
    assert not rate.may_start(third)  # late, and two already went in the last second (0.3 and 0.6)
    clock.sleep(0.1 + JITTER + 0.001)
    assert rate.may_start(third)  # the 0.3 send has left the window (and its jitter margin)


def test_an_on_time_start_waits_for_room_a_late_one_left_behind():
    """A send a little late (within TOLERANCE) leaves less than a second before the next
    on-time one: that one waits the difference, so the provider's window stays within."""
    clock = FakeTime()
    rate = SendRate(2, now=clock.now, sleep=clock.sleep)
    first, second, third = rate.reserve(3)  # 0, 0.535, 1.07
    clock.sleep(first + TOLERANCE)
    assert rate.may_start(first)  # late, within tolerance
    clock.sleep(second - clock.now())
    assert rate.may_start(second)
    clock.sleep(third - clock.now())
    assert rate.may_start(third)
    assert clock.now() == pytest.approx(first + TOLERANCE + 1.0 + JITTER)  # waited, not sent into the window


def test_slots_nobody_used_are_given_back_unless_someone_reserved_after_them():
    clock = FakeTime()
    rate = SendRate(1, now=clock.now, sleep=clock.sleep)
    first, second, third = rate.reserve(3)
    rate.give_back([second, third])  # held at the check (quiet hours): no send, no slot spent
    assert rate.reserve(1) == [second]
    later = rate.reserve(1)
    rate.give_back([second])  # not the tail any more: keeping the pace matters more
    assert rate.reserve(1)[0] > later[0]
