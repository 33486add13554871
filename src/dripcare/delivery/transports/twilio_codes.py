"""Twilio's answer codes and what each means to dripcare (SPEC 7), read by the SMS
transport when sending and by `app.outcomes` for status callbacks, so a code means the
same thing whenever it arrives. No SDK here: the web process and tests read it freely."""

from __future__ import annotations

from dataclasses import dataclass

CALLBACK_ACTIONS = ("contact_invalid", "opted_out", "account", "filtered", "record")


@dataclass(frozen=True)
class TwilioCode:
    send: str  # the TransportError kind when the API call answers with this code
    callback: str  # what the web process does when a status callback carries it
    meaning: str  # for operators; never quotes Twilio's message, which may hold the number


TWILIO_CODES: dict[int, TwilioCode] = {
    20003: TwilioCode("account", "account", "authentication failed"),
    20429: TwilioCode("retryable", "record", "too many requests"),
    21211: TwilioCode("permanent", "contact_invalid", "invalid 'To' number"),
    21212: TwilioCode("account", "account", "invalid 'From' number"),
    21408: TwilioCode("permanent", "contact_invalid", "SMS not enabled for the destination's region"),
    21606: TwilioCode("account", "account", "'From' number cannot send SMS"),
    21610: TwilioCode("opted_out", "opted_out", "recipient opted out (STOP)"),
    21611: TwilioCode("retryable", "record", "sender's queue is full"),
    21614: TwilioCode("permanent", "contact_invalid", "'To' is not a mobile number"),
    21635: TwilioCode("permanent", "contact_invalid", "'To' number cannot receive SMS"),
    21705: TwilioCode("account", "account", "invalid messaging service"),
    30003: TwilioCode("retryable", "record", "handset unreachable"),
    30005: TwilioCode("permanent", "contact_invalid", "unknown handset"),
    30006: TwilioCode("permanent", "contact_invalid", "landline or unreachable carrier"),
    30007: TwilioCode("retryable", "filtered", "filtered by the carrier"),
    30032: TwilioCode("account", "account", "toll-free sender not verified"),
    30034: TwilioCode("account", "account", "sender not registered (A2P 10DLC)"),
}


def classify_twilio_error(code: int | None, http_status: int | None) -> str:
    """The TransportError kind for an API answer (SPEC 7 "answers when sending")."""
    known = TWILIO_CODES.get(code) if code else None
    if known:
        return known.send
    if http_status == 429:
        return "retryable"
    if http_status in (401, 403):
        return "account"
    if http_status is None or http_status >= 500:
        return "ambiguous"  # the request left: Twilio may have accepted it
    # An unknown 4xx refused this request as sent. Retrying is bounded by max attempts and
    # expiry; "permanent" would flag a good number invalid, "account" would stop every SMS.
    return "retryable"


def classify_callback_code(code: int | str | None) -> str:
    """What a status callback's ErrorCode asks of the web process (SPEC 7 "answers after sending")."""
    try:
        number = int(code) if code not in (None, "") else None
    except (TypeError, ValueError):
        return "record"
    known = TWILIO_CODES.get(number) if number else None
    return known.callback if known else "record"
