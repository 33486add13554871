"""What staff type -> checked values. Each failure is one line saying what, and how to fix it."""

from __future__ import annotations

import re
import unicodedata
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


_ONE_DIGIT_HOUR = re.compile(r"^(\d{4}-\d{2}-\d{2})([ T])(\d:\d{2})")


def local_datetime(text: str, tz_name: str, what: str = "time") -> datetime:
    """ISO 8601 as people type it (`2027-03-09 9:30`, `2027-03-09T09:30`, an optional
    offset); without an offset it is the patient's local time, refused in a DST gap."""
    typed = _ONE_DIGIT_HOUR.sub(lambda m: f"{m[1]}{m[2]}0{m[3]}", text.strip())
    try:
        value = datetime.fromisoformat(typed.replace("Z", "+00:00"))
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


NAME_LIMIT = 100
# Bidirectional overrides and isolates reorder what a reader sees (U+202E makes "txt.exe"
# read "exe.txt"); format characters of that kind never belong in a patient's name.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
LOCALE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
LARGEST_ID = 2**63 - 1  # the databases' integer


def name(text: str, what: str) -> str:
    """A person's name as it will be printed in their texts: 1 to 100 printable
    characters, no control, bidirectional-override or other invisible format characters."""
    value = " ".join(text.split())
    if not value:
        raise BadInput(f"{what} is empty; write the name as the patient gives it")
    bad = next((c for c in value if c in _BIDI or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if bad is not None:
        raise BadInput(f"{what} contains an unprintable character (U+{ord(bad):04X}); type the name again")
    if len(value) > NAME_LIMIT:
        raise BadInput(f"{what} is {len(value)} characters long; at most {NAME_LIMIT}")
    return value


def locale(text: str, what: str = "--locale") -> str:
    """A language tag: en, es, fr-CA."""
    value = text.strip().replace("_", "-")
    if not LOCALE_TAG.match(value):
        raise BadInput(f"{what} {text!r} is not a language tag like en, es or fr-CA")
    return value


def record_id(text: str | int, what: str) -> int | None:
    """A numeric id as staff type it; None when it cannot be an id at all (too large for
    the database, or not a whole number), which callers report as "no <what> N"."""
    value = str(text).strip()
    if not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 0 < number <= LARGEST_ID else None


# How a session's drug is given: the templates word each message after it (SPEC 4), so a
# value they do not know would fall back to another route's wording (docs/writing-messages.md).
MODALITIES = ("iv", "im", "intranasal", "sublingual", "oral")


def modality(text: str | None, what: str = "--modality") -> str | None:
    """One of MODALITIES, any case; empty is none (the campaign's usual route)."""
    if text is None or not text.strip():
        return None
    return choice(text, MODALITIES, what)
