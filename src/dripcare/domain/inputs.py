"""What staff type -> checked values. Each failure is one line saying what, and how to fix it."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from dripcare.domain.timing import UTC, resolve_wall, wall_exists, zone


class BadInput(ValueError):
    """A present but invalid value (exit 1, nothing written)."""


def phone(text: str, country: str) -> str:
    """E.164, with `country` as the region for numbers written without +country code."""
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        raise BadInput(f"phone {text!r} is not a phone number; write it like +1 780 555 0123") from None
    if not phonenumbers.is_valid_number(number):
        raise BadInput(f"phone {text!r} is not a valid number for {country} or its +country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email(text: str) -> str:
    """Syntax only: no DNS (a clinic may be offline, and DNS proves nothing about a mailbox)."""
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise BadInput(f"email {text!r} is not valid: {error}") from None


def timezone_name(text: str) -> str:
    try:
        zone(text)
    except ValueError as error:
        raise BadInput(f"timezone {error}") from None
    return text


def local_datetime(text: str, tz_name: str, what: str = "time") -> datetime:
    """ISO 8601; without an offset it is the patient's local time, refused in a DST gap."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a date and time like 2027-06-10 09:30 "
                       f"(local to the patient) or 2027-06-10T15:30:00Z") from None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    tz = zone(tz_name)
    if not wall_exists(value, tz):
        raise BadInput(f"{what} {text!r} does not exist in {tz_name} (clocks skip it for daylight saving); "
                       f"pick a time outside the gap")
    return resolve_wall(value, tz)


def choice(text: str, allowed: tuple[str, ...], what: str) -> str:
    value = text.strip().lower()
    if value not in allowed:
        raise BadInput(f"{what} {text!r} is not one of {', '.join(allowed)}")
    return value


def positive_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a whole number") from None
    if value <= 0:
        raise BadInput(f"{what} {text!r} must be above zero")
    return value
