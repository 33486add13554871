"""May this pending message still go out? One judgement, in one order, for planning
(why a row planning no longer wants is cancelled) and for the check at the moment of
sending (SPEC 6, 7): a row that is both opted-out and paused gets the same reason on
either path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Standing:
    """What decides whether a pending row may still go out, read fresh."""

    enrollment_status: str | None  # None: the enrollment is gone
    step_exists: bool  # the campaign (its last good version) still has the step
    reachable: bool  # a contact on the channel, not flagged invalid by a provider
    consented: bool  # consent in force for that contact
    session_status: str | None  # the row's session; None for enrollment steps
    anchor_current: bool  # the row's (session, instant) is still one its step hangs on


def stop_reason(s: Standing) -> str | None:
    """The SPEC 6 reason a row must not go out, or None when it may. The order is the
    rule: the enrollment first, then the campaign, the contact, consent, the session."""
    if s.enrollment_status in (None, "withdrawn"):
        return "withdrawn"
    if s.enrollment_status == "paused":
        return "paused"
    if not s.step_exists:
        return "step_removed"
    if not s.reachable:
        return "contact_invalid"
    if not s.consented:
        return "opted_out"
    if s.session_status == "cancelled":
        return "session_cancelled"
    if s.session_status == "no_show":
        return "no_show"
    if not s.anchor_current:
        return "rescheduled"
    return None
