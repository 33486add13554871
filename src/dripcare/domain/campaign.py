"""Campaign and step values (SPEC 3.3): what planning and sending read of a campaign file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

from dripcare.domain.timing import Offset

ANCHORS = ("enrollment", "first_session", "each_session", "last_session")


@dataclass(frozen=True)
class Step:
    id: str
    anchor: str
    offset: Offset
    at: time | None
    channels: tuple[str, ...]
    priority: int
    expires: str | timedelta | None  # "session_start", a duration after due, or the default
    when: str  # not_cancelled | completed

    @property
    def session_anchored(self) -> bool:
        return self.anchor != "enrollment"


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    channels: tuple[str, ...]
    course_end: str  # last_booked | on_complete
    steps: tuple[Step, ...]
    digest: str

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)
