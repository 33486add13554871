"""When to try again after a retryable answer (SPEC 7): a pure policy."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

MAX_ATTEMPTS = 5
BACKOFF = (timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30), timedelta(minutes=60))
JITTER = 0.25


def next_attempt(attempts: int, now: datetime, expires_at: datetime,
                 rng: random.Random | None = None) -> tuple[str, datetime | None]:
    """("retry", when) | ("failed", None) after the last attempt | ("expired", None)
    when the next try would land past expiry."""
    if attempts >= MAX_ATTEMPTS:
        return "failed", None
    base = BACKOFF[min(attempts, len(BACKOFF)) - 1] if attempts > 0 else BACKOFF[0]
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    when = now + base * factor
    if when >= expires_at:
        return "expired", None
    return "retry", when
