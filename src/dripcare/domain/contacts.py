"""Channels and the contact each one reaches (SPEC 5): the one place that knows an SMS
goes to the phone and an email to the address. Pure: it reads attributes, nothing else."""

from __future__ import annotations

from typing import Protocol

CHANNELS = ("sms", "email")
CONSENT_SOURCES = ("staff", "import", "sms_keyword", "email_unsubscribe", "carrier")
_FIELDS = {"sms": ("phone", "phone_invalid"), "email": ("email", "email_invalid")}
CONTACT_WORD = {"sms": "phone", "email": "email"}


class HasContacts(Protocol):
    phone: str | None
    email: str | None
    phone_invalid: bool
    email_invalid: bool


def contact_for(patient: HasContacts, channel: str) -> str | None:
    return getattr(patient, _FIELDS[channel][0])


def contact_flagged(patient: HasContacts, channel: str) -> bool:
    """A provider said this contact can never receive (SPEC 7); cleared when staff change it."""
    return bool(getattr(patient, _FIELDS[channel][1]))


def reachable(patient: HasContacts, channel: str) -> bool:
    return bool(contact_for(patient, channel)) and not contact_flagged(patient, channel)


def invalid_flag(channel: str) -> str:
    """The patient attribute that flags this channel's contact invalid."""
    return _FIELDS[channel][1]
