"""`config/clinic.toml`: who the clinic is and how it sends (SPEC 3.2)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from dripcare.domain.timing import QuietHours, parse_hhmm, zone


class ConfigError(Exception):
    """One line: the file, the place in it, what is wrong (quoting the value)."""


@dataclass(frozen=True)
class Clinic:
    name: str
    sms_name: str
    country: str
    phone: str
    email: str
    website: str
    address: str
    timezone: str
    locale: str
    crisis_line: str
    quiet_hours: QuietHours
    max_per_day: dict[str, int]
    sms_footer: str
    help_reply: str
    opt_out_reply: str
    opt_in_reply: str
    unmonitored_reply: str
    keyword_replies: bool
    notify_email: str | None

    def template_context(self) -> dict[str, str]:
        """What templates see as `clinic`."""
        return {key: getattr(self, key) for key in (
            "name", "sms_name", "phone", "email", "website", "address", "timezone", "crisis_line")}


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run `dripcare init` to write an example") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def _text(path: Path, table: dict, section: str, key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: [{section}] {key} must be a non-empty string, got {value!r}")
    return value


def load_clinic(config_dir: Path) -> Clinic:
    path = config_dir / "clinic.toml"
    data = read_toml(path)
    clinic, sending, sms = data.get("clinic", {}), data.get("sending", {}), data.get("sms", {})
    name = _text(path, clinic, "clinic", "name")
    country = _text(path, clinic, "clinic", "country").upper()
    if country not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{path}: [clinic] country {country!r} is not a two-letter region code, e.g. CA or US")
    tz = _text(path, clinic, "clinic", "timezone")
    try:
        zone(tz)
    except ValueError as error:
        raise ConfigError(f"{path}: [clinic] timezone: {error}") from None
    quiet = sending.get("quiet_hours", {"start": "21:00", "end": "08:00"})
    try:
        quiet_hours = QuietHours(parse_hhmm(str(quiet.get("start"))), parse_hhmm(str(quiet.get("end"))))
    except (ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: [sending] quiet_hours: {error}") from None
    caps = sending.get("max_per_day", {"sms": 2, "email": 2})
    for channel in ("sms", "email"):
        if not isinstance(caps.get(channel, 2), int) or caps.get(channel, 2) < 1:
            raise ConfigError(f"{path}: [sending] max_per_day.{channel} must be a whole number of at least 1, got {caps.get(channel)!r}")
    keyword_replies = sms.get("keyword_replies", True)
    if not isinstance(keyword_replies, bool):
        raise ConfigError(f"{path}: [sms] keyword_replies must be true or false, got {keyword_replies!r}")
    return Clinic(
        name=name,
        sms_name=clinic.get("sms_name") or name,
        country=country,
        phone=_text(path, clinic, "clinic", "phone"),
        email=_text(path, clinic, "clinic", "email"),
        website=clinic.get("website", ""),
        address=clinic.get("address", ""),
        timezone=tz,
        locale=clinic.get("locale", "en"),
        crisis_line=_text(path, clinic, "clinic", "crisis_line", "988"),
        quiet_hours=quiet_hours,
        max_per_day={"sms": caps.get("sms", 2), "email": caps.get("email", 2)},
        sms_footer=sms.get("footer", "Reply STOP to opt out, HELP for help."),
        help_reply=_text(path, sms, "sms", "help_reply", "{{ clinic.sms_name }}: call {{ clinic.phone }}. Reply STOP to opt out."),
        opt_out_reply=_text(path, sms, "sms", "opt_out_reply", "{{ clinic.sms_name }}: you will get no more texts from us. Reply START to resume."),
        opt_in_reply=_text(path, sms, "sms", "opt_in_reply", "{{ clinic.sms_name }}: texts resumed. Reply STOP to opt out."),
        unmonitored_reply=_text(path, sms, "sms", "unmonitored_reply", "{{ clinic.sms_name }}: this number is not monitored. Call {{ clinic.phone }}. In crisis, call or text {{ clinic.crisis_line }}."),
        keyword_replies=keyword_replies,
        notify_email=data.get("inbox", {}).get("notify_email"),
    )
