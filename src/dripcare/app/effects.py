"""What a staff change did to a patient's messages, and what happens next (SPEC 9: "a
change says what it did"): per channel, how many messages were planned, moved, cancelled
or skipped; when the next one goes out; and a note for every channel a campaign uses on
which nothing will go out, saying why. Front-desk staff read this instead of a timeline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from sqlmodel import Session

from dripcare.app.wording import CHANNEL_WORD, when
from dripcare.domain.campaign import Campaign
from dripcare.domain.contacts import contact_flagged, contact_for
from dripcare.domain.statuses import ACTIVE_ENROLLMENT, COUNTED_SESSIONS, PENDING, MessageStatus as S
from dripcare.store import consent as consent_rows
from dripcare.store import outbox
from dripcare.store import patients as patient_rows
from dripcare.store.models import Enrollment, Message, Patient
from dripcare.store.outbox import RowBrief

T = TypeVar("T")
CONTACT_NOUN = {"sms": "phone number", "email": "email address"}
CONTACT_OPTION = {"sms": "--phone NUMBER", "email": "--email ADDRESS"}


@dataclass(frozen=True)
class NextMessage:
    id: int
    at: datetime
    channel: str
    step: str


@dataclass
class Effect:
    """Counts are per channel; `reasons` says why rows were cancelled or skipped."""

    timezone: str
    planned: Counter = field(default_factory=Counter)
    moved: Counter = field(default_factory=Counter)
    cancelled: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    next_message: NextMessage | None = None
    notes: list[str] = field(default_factory=list)

    def count(self, old: RowBrief | None, new: RowBrief) -> None:
        """One row compared before and after the change."""
        if old is None:
            if new.status == S.SCHEDULED:
                self.planned[new.channel] += 1
            elif new.status == S.SKIPPED:
                self._stopped(self.skipped, new)
            return
        if old.status == new.status:
            if new.status == S.SCHEDULED and old.due_at != new.due_at:
                self.moved[new.channel] += 1
        elif new.status == S.CANCELLED and old.status in PENDING:
            self._stopped(self.cancelled, new)
        elif new.status == S.SCHEDULED and old.status in (S.CANCELLED, S.SKIPPED):
            self.planned[new.channel] += 1  # planned again
        elif new.status == S.SKIPPED and old.status == S.SCHEDULED:
            self._stopped(self.skipped, new)

    def _stopped(self, counter: Counter, row: RowBrief) -> None:
        counter[row.channel] += 1
        self.reasons[row.reason or "unknown"] += 1

    def as_dict(self) -> dict:
        nxt = self.next_message
        return {"planned": dict(self.planned), "moved": dict(self.moved), "cancelled": dict(self.cancelled),
                "skipped": dict(self.skipped), "reasons": dict(self.reasons),
                "next_message": None if nxt is None else {"id": nxt.id, "at": nxt.at, "channel": nxt.channel,
                                                          "step": nxt.step},
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The changed row and what the change did."""

    row: T
    effect: Effect

    def __getattr__(self, name: str):
        # Callers that only want the row (import, the demo, tests) read it as they always did.
        if name == "row":
            raise AttributeError(name)
        return getattr(self.row, name)


@dataclass
class Hints:
    """What only the change itself knows, for its notes."""

    dropped: set[str] = field(default_factory=set)  # consent that did not follow a changed contact
    past_sessions: list[tuple[int, datetime]] = field(default_factory=list)  # put before now by this change


def apply(rt, session: Session, patient: Patient, by: str | None, now: datetime,
          act: Callable[[Session, Patient, datetime, Hints], T]) -> Outcome[T]:
    """`act`, then the replan, in the caller's transaction; the outcome compares the
    patient's rows before and after."""
    before = outbox.briefs_of_patient(session, patient.id)
    hints = Hints()
    row = act(session, patient, now, hints)
    rt.replan(session, patient, by, now)
    after = outbox.briefs_of_patient(session, patient.id)
    effect = Effect(timezone=patient.timezone)
    for row_id, new in sorted(after.items()):
        effect.count(before.get(row_id), new)
    nxt = outbox.next_planned(session, patient.id, now)
    if nxt is not None:
        effect.next_message = NextMessage(nxt.id, nxt.next_attempt_at or nxt.due_at, nxt.channel, nxt.step_id)
    effect.notes = [f"session {sid} ({when(at, patient.timezone)}) is already in the past: nothing is sent "
                    f"before it" for sid, at in hints.past_sessions]
    effect.notes += channel_notes(rt, session, patient, after.values(), now, hints.dropped)
    return Outcome(row, effect)


def channel_notes(rt, session: Session, patient: Patient, rows: Iterable[RowBrief | Message], now: datetime,
                  dropped: Collection[str] = ()) -> list[str]:
    """A line for each channel an enrollment's campaign uses on which nothing is planned
    (`rows`: the patient's messages, as briefs or as rows already read)."""
    # A scheduled row past its expiry will never go (the dispatcher expires it): it is not planned.
    planned = {(r.enrollment_id, r.channel) for r in rows if r.status == S.SCHEDULED and r.expires_at > now}
    consent = consent_rows.consent_in_force(session, patient)
    notes = []
    for enrollment in patient_rows.enrollments_of(session, patient.id):
        campaign = rt.campaigns.get(enrollment.campaign_id)
        if enrollment.status == "paused":
            notes.append(f"enrollment {enrollment.id} ({enrollment.campaign_id}) is paused: nothing goes out "
                         f"until `dripcare enrollment resume {enrollment.id}`")
        elif enrollment.status not in ACTIVE_ENROLLMENT:
            continue
        elif campaign is None:
            notes.append(f"enrollment {enrollment.id}: the campaign file for {enrollment.campaign_id} is missing; "
                         f"nothing new is planned until it is back")
        else:
            for channel in dict.fromkeys(c for step in campaign.steps for c in step.channels):
                if (enrollment.id, channel) not in planned:
                    why = _why_nothing(session, patient, enrollment, campaign, channel, consent, dropped, now)
                    notes.append(f"no {CHANNEL_WORD[channel]} will go out for {campaign.id}: {why}")
    return notes


def _why_nothing(session: Session, patient: Patient, enrollment: Enrollment, campaign: Campaign, channel: str,
                 consent: dict[str, bool], dropped: Collection[str], now: datetime) -> str:
    """The first thing that stops a channel, in the order staff would fix them."""
    noun, word = CONTACT_NOUN[channel], CHANNEL_WORD[channel]
    update = f"`dripcare patient update {patient.id} {CONTACT_OPTION[channel]}`"
    grant = f"`dripcare consent grant {patient.id} --channel {channel}`"
    if not contact_for(patient, channel):
        return f"patient {patient.id} has no {noun}; add one with {update}"
    if contact_flagged(patient, channel):
        return f"the provider reported the {noun} cannot receive messages; change it with {update}"
    if not consent[channel]:
        if channel in dropped:
            return f"{word} consent was given for the old {noun} and does not carry over; record it for the " \
                   f"new one with {grant}"
        if _withdrawn(session, patient, channel):
            return f"{word} consent was withdrawn; if the patient gives it again, record it with {grant}"
        return f"no {word} consent recorded; record it with {grant}"
    if any(step.session_anchored and channel in step.channels for step in campaign.steps):
        booked = [s for s in patient_rows.sessions_of(session, enrollment.id) if s.status in COUNTED_SESSIONS]
        if not booked:
            return f"no session booked; book one with `dripcare session add {patient.id} --at DATETIME`"
        if all(s.starts_at <= now for s in booked):
            return "the session is already in the past" if len(booked) == 1 else \
                "every session is already in the past"
    return "nothing left to send: every step has gone out, was cancelled or skipped, or its time has passed"


def _withdrawn(session: Session, patient: Patient, channel: str) -> bool:
    """A revocation is the latest consent recorded for this contact (rather than none at all)."""
    contact = contact_for(patient, channel)
    rows = [c for c in consent_rows.history(session, patient.id) if c.channel == channel and c.contact == contact]
    return bool(rows) and not rows[-1].granted
