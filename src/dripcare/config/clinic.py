"""`config/clinic.toml`: who the clinic is and how it sends (SPEC 3.2)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

from dripcare.domain.timing import QuietHours, parse_hhmm, zone


class ConfigError(Exception):
    """One line: the file, the place in it, what is wrong (quoting the value)."""


# The texts of [sms] (and [sms.<locale>]): the key in the file -> the Clinic attribute.
SMS_TEXTS = {"footer": "sms_footer", "help_reply": "help_reply", "opt_out_reply": "opt_out_reply",
             "opt_in_reply": "opt_in_reply", "unmonitored_reply": "unmonitored_reply",
             "crisis_reply": "crisis_reply"}
DEFAULT_SMS = {
    "footer": "Reply STOP to opt out, HELP for help.",
    "help_reply": "{{ clinic.sms_name }}: care messages. Call {{ clinic.phone }}. Msg&data rates may apply. "
                  "Reply STOP to opt out.",
    "opt_out_reply": "{{ clinic.sms_name }}: you will get no more texts from us. Reply START to resume.",
    "opt_in_reply": "{{ clinic.sms_name }}: texts resumed. Reply STOP to opt out.",
    "unmonitored_reply": "{{ clinic.sms_name }}: this number is not monitored. Call {{ clinic.phone }}. "
                         "If you are in crisis, call or text {{ clinic.crisis_line }}, or {{ clinic.emergency_number }}.",
    "crisis_reply": "If you are in danger now, call {{ clinic.emergency_number }}. You can call or text "
                    "{{ clinic.crisis_line }} any time, day or night. We have told the care team. {{ clinic.sms_name }}",
}
LOCALE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_INSTRUCTION_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_MAX_SEGMENTS = 3


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
    emergency_number: str = "911"
    crisis_reply: str = DEFAULT_SMS["crisis_reply"]
    urgent_sms: str | None = None
    max_segments: int = DEFAULT_MAX_SEGMENTS
    instructions: dict[str, object] = field(default_factory=dict)
    # [sms.<locale>]: the texts given for that locale; any not given falls back to [sms].
    sms_by_locale: dict[str, dict[str, str]] = field(default_factory=dict)
    digest: str = ""

    def template_context(self) -> dict[str, object]:
        """What templates see as `clinic`."""
        values: dict[str, object] = {key: getattr(self, key) for key in (
            "name", "sms_name", "phone", "email", "website", "address", "timezone", "crisis_line",
            "emergency_number")}
        values["instructions"] = dict(self.instructions)
        return values

    def sms_text(self, key: str, locale: str | None) -> str:
        """An [sms] text (`footer`, `crisis_reply`, ...) in the patient's locale: the
        [sms.<locale>] one, then its language's ([sms.es] for es-MX), then [sms]."""
        for tag in _locale_chain(locale):
            text = self.sms_by_locale.get(tag, {}).get(key)
            if text is not None:
                return text
        return getattr(self, SMS_TEXTS[key])

    @property
    def sms_locales(self) -> list[str]:
        return sorted(self.sms_by_locale)


def _locale_chain(locale: str | None) -> list[str]:
    if not locale:
        return []
    tag = locale.replace("_", "-").lower()
    return list(dict.fromkeys([tag, tag.split("-")[0]]))


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run `dripcare init` to write an example") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None


def _text(path: Path, table: dict, section: str, key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: [{section}] {key} must be a non-empty string, got {value!r}")
    return value


def _table(path: Path, data: dict, section: str) -> dict:
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{section}] must be a table, got {value!r}")
    return value


def _phone(path: Path, where: str, value, country: str) -> str:
    try:
        number = phonenumbers.parse(str(value), country)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ConfigError(f"{path}: {where} {value!r} is not a phone number; write it like +1 780 555 0199")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _sms_texts(path: Path, sms: dict) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    base = {key: DEFAULT_SMS[key] for key in SMS_TEXTS}
    for key in SMS_TEXTS:
        if key in sms:
            if key == "footer":  # an empty footer is allowed: the clinic relies on Twilio's
                if not isinstance(sms[key], str):
                    raise ConfigError(f"{path}: [sms] footer must be a string, got {sms[key]!r}")
                base[key] = sms[key]
            else:
                base[key] = _text(path, sms, "sms", key)
    by_locale = {}
    for locale, table in sms.items():
        if not isinstance(table, dict):
            continue
        if not LOCALE_TAG.match(locale):
            raise ConfigError(f"{path}: [sms.{locale}] is not a language tag like es or es-MX")
        unknown = sorted(set(table) - set(SMS_TEXTS))
        if unknown:
            raise ConfigError(f"{path}: [sms.{locale}] unknown key {unknown[0]!r}; the texts are "
                              f"{', '.join(SMS_TEXTS)}")
        by_locale[locale.lower()] = {k: _text(path, table, f"sms.{locale}", k) if k != "footer" else str(v)
                                     for k, v in table.items()}
    unknown = sorted(k for k in sms if k not in SMS_TEXTS and k not in ("keyword_replies", "max_segments")
                     and not isinstance(sms[k], dict))
    if unknown:
        raise ConfigError(f"{path}: [sms] unknown key {unknown[0]!r}")
    return base, by_locale


def _instructions(path: Path, data: dict) -> dict[str, object]:
    table = _table(path, data, "instructions")
    for key, value in table.items():
        if not _INSTRUCTION_KEY.match(key):
            raise ConfigError(f"{path}: [instructions] key {key!r} must be lowercase letters, digits and _")
        if isinstance(value, (dict, list)) or (isinstance(value, str) and not value.strip()):
            raise ConfigError(f"{path}: [instructions] {key} must be a word, a sentence or a number, got {value!r}")
    return dict(table)


def _caps(path: Path, sending: dict) -> dict[str, int]:
    caps = sending.get("max_per_day", {"sms": 2, "email": 2})
    if not isinstance(caps, dict):
        raise ConfigError(f"{path}: [sending] max_per_day must be a table like {{ sms = 2, email = 2 }}, got {caps!r}")
    for channel in ("sms", "email"):
        value = caps.get(channel, 2)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}: [sending] max_per_day.{channel} must be a whole number of at least 1, "
                              f"got {value!r}")
    return {"sms": caps.get("sms", 2), "email": caps.get("email", 2)}


def _quiet_hours(path: Path, sending: dict) -> QuietHours:
    quiet = sending.get("quiet_hours", {"start": "21:00", "end": "08:00"})
    try:
        return QuietHours(parse_hhmm(str(quiet.get("start"))), parse_hhmm(str(quiet.get("end"))))
    except (ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: [sending] quiet_hours: {error}") from None


def load_clinic(config_dir: Path) -> Clinic:
    path = Path(config_dir) / "clinic.toml"
    data = read_toml(path)
    clinic = _table(path, data, "clinic")
    sending, sms, inbox = (_table(path, data, s) for s in ("sending", "sms", "inbox"))
    name = _text(path, clinic, "clinic", "name")
    country = _text(path, clinic, "clinic", "country").upper()
    if country not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{path}: [clinic] country {country!r} is not a two-letter region code, e.g. CA or US")
    tz = _text(path, clinic, "clinic", "timezone")
    try:
        zone(tz)
    except ValueError as error:
        raise ConfigError(f"{path}: [clinic] timezone: {error}") from None
    locale = clinic.get("locale", "en")
    if not isinstance(locale, str) or not LOCALE_TAG.match(locale):
        raise ConfigError(f"{path}: [clinic] locale {locale!r} is not a language tag like en or es")
    keyword_replies = sms.get("keyword_replies", True)
    if not isinstance(keyword_replies, bool):
        raise ConfigError(f"{path}: [sms] keyword_replies must be true or false, got {keyword_replies!r}")
    max_segments = sms.get("max_segments", DEFAULT_MAX_SEGMENTS)
    if not isinstance(max_segments, int) or isinstance(max_segments, bool) or not 1 <= max_segments <= 10:
        raise ConfigError(f"{path}: [sms] max_segments must be a whole number from 1 to 10, got {max_segments!r}")
    texts, by_locale = _sms_texts(path, sms)
    urgent = inbox.get("urgent_sms")
    return Clinic(
        name=name,
        sms_name=clinic.get("sms_name") or name,
        country=country,
        phone=_text(path, clinic, "clinic", "phone"),
        email=_text(path, clinic, "clinic", "email"),
        website=clinic.get("website", ""),
        address=clinic.get("address", ""),
        timezone=tz,
        locale=locale,
        crisis_line=_text(path, clinic, "clinic", "crisis_line", "988"),
        emergency_number=_text(path, clinic, "clinic", "emergency_number", "911"),
        quiet_hours=_quiet_hours(path, sending),
        max_per_day=_caps(path, sending),
        sms_footer=texts["footer"],
        help_reply=texts["help_reply"],
        opt_out_reply=texts["opt_out_reply"],
        opt_in_reply=texts["opt_in_reply"],
        unmonitored_reply=texts["unmonitored_reply"],
        crisis_reply=texts["crisis_reply"],
        sms_by_locale=by_locale,
        keyword_replies=keyword_replies,
        max_segments=max_segments,
        notify_email=inbox.get("notify_email"),
        urgent_sms=_phone(path, "[inbox] urgent_sms", urgent, country) if urgent else None,
        instructions=_instructions(path, data),
        digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    )
