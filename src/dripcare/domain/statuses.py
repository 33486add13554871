"""The states a message, an enrollment and a session go through (SPEC 5, 6, 7), and the
groups of them that rules talk about. One place: every module names a state through here.

`MessageStatus` is a `StrEnum`, so a member is the very string stored in the database
and compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"
    EXPIRED = "expired"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


S = MessageStatus
ALL = tuple(S)
# Waiting to go out: planning may still move them; the daily cap reopens skipped ones.
PENDING = (S.SCHEDULED, S.SKIPPED)
# Rows that belong to planning, unless they were ever claimed (SPEC 6 rule 10).
PLANNING = (S.SCHEDULED, S.CANCELLED, S.SKIPPED)
# Went (or may have gone) out: they fill the daily cap and make once-only steps done.
WENT_OUT = (S.SENDING, S.UNCONFIRMED, S.SENT, S.DELIVERED, S.UNDELIVERED)
# Claimed and not settled: the dispatcher resolves these before anything new.
IN_DOUBT = (S.SENDING, S.UNCONFIRMED)
# Nothing moves a row out of these.
FINAL = (S.DELIVERED, S.UNDELIVERED, S.FAILED, S.EXPIRED, S.CANCELLED)
# A status callback may move these (it can beat our own record of the send).
CALLBACK_FROM = (S.SENT, S.UNCONFIRMED, S.SENDING)
CALLBACK_TO = (S.DELIVERED, S.UNDELIVERED, S.FAILED)
# Counted by `report`: states a manager reads, not the machinery in between.
REPORTED = (S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.EXPIRED, S.SKIPPED, S.CANCELLED)
NOT_DELIVERED = (S.FAILED, S.UNDELIVERED)

# Sessions (SPEC 5) and which of them anchor steps (SPEC 6 rule 1).
SESSION_STATUSES = ("scheduled", "completed", "cancelled", "no_show")
COUNTED_SESSIONS = ("scheduled", "completed")
# Enrollments: a completed course still sends its last_session steps (rule 9).
ENROLLMENT_STATUSES = ("active", "paused", "completed", "withdrawn")
ACTIVE_ENROLLMENT = ("active", "completed")
OPEN_ENROLLMENT = ("active", "paused", "completed")

# Why a row is not sent or not sent yet (SPEC 6, closed list); provider codes come on top.
REASONS = ("rescheduled", "session_cancelled", "no_show", "withdrawn", "paused", "opted_out",
           "contact_invalid", "daily_cap", "no_send_window", "quiet_hours", "expired", "max_attempts",
           "template_error", "step_removed", "channel_paused", "staff")
