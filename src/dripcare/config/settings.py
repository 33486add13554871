"""Typed settings from the environment and `.env` (SPEC 3.1).

Each value is parsed when a command first asks for it, so a command checks only the
settings it uses (`timeline` never needs Twilio credentials). `Settings.validate`
checks a command's settings all at once: one line per bad setting, naming the variable,
what is wrong and what it should look like, never the secret itself.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import phonenumbers
from dotenv import dotenv_values
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dripcare.config.clock import Clock, SimulatedClock, SystemClock, parse_now_spec

DEVELOPMENT_KEY = "development-only-key"  # never used once a real transport is on
DEFAULT_DATABASE_URL = "sqlite:///dripcare.db"
DEVELOPMENT_TRANSPORTS = ("console", "file")
# Every setting the worker and `dispatch --once` use, checked together at start.
SENDING = ("database_url", "clock", "log_format", "sms_rate", "email_rate", "dispatch_interval",
           "dispatch_batch", "send_concurrency", "public_base_url", "email_from", "email_reply_to",
           "transports")
_SID_DIGITS = re.compile(r"^[0-9a-fA-F]{32}$")


class SettingsError(Exception):
    """One line per bad setting: the variable, what is wrong, how to fix it. `lines`
    holds them one by one (`Settings.validate` gathers every problem at once)."""

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or message.splitlines()


class _Problems:
    """Reads several settings, keeping every problem instead of stopping at the first."""

    def __init__(self):
        self.lines: list[str] = []

    def read(self, reader: Callable, *args):
        try:
            return reader(*args)
        except SettingsError as error:
            self.lines += [line for line in error.lines if line not in self.lines]
            return None

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def raise_any(self) -> None:
        if self.lines:
            raise SettingsError("\n".join(self.lines), list(self.lines))


def read_environment(workdir: Path | None = None) -> dict[str, str]:
    """`.env` in the working directory, then the process environment on top (it wins)."""
    env_file = (workdir or Path.cwd()) / ".env"
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.is_file() else {}
    values.update(os.environ)
    return values


class Settings:
    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = dict(read_environment() if env is None else env)

    def validate(self, *names: str) -> None:
        """Check the named settings (properties, or `twilio`, `smtp`, `transports`,
        `unsubscribe_keys`, `clock`) all at once; SettingsError with one line per bad one."""
        problems = _Problems()
        for name in names:
            problems.read(self._evaluate, name)
        problems.raise_any()

    def _evaluate(self, name: str):
        value = getattr(self, name)
        return value() if callable(value) else value

    # -- reading one variable -------------------------------------------------------------

    def _get(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value if value else default

    def _required(self, name: str, why: str) -> str:
        value = self._get(name)
        if value is None:
            raise SettingsError(f"{name} is not set; {why}")
        return value

    def _choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def _number(self, name: str, default: str, kind=int, minimum: float = 0, maximum: float = math.inf):
        raw = self._get(name, default)
        whole = "whole " if kind is int else ""
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a {whole}number; write it like {default}") from None
        if not math.isfinite(value):
            raise SettingsError(f"{name}={raw!r} is not a {whole}number; write it like {default}")
        if value <= minimum or value > maximum:
            upper = f" and at most {maximum:g}" if maximum < math.inf else ""
            raise SettingsError(f"{name}={raw!r} must be above {minimum:g}{upper}; the default is {default}")
        return value

    def _url(self, name: str, example: str) -> str | None:
        url = self._get(name)
        if url is None:
            return None
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
            raise SettingsError(f"{name}={url!r} is not an http(s) URL without a query, e.g. {example}")
        return url.rstrip("/")

    def _email(self, name: str) -> str | None:
        """An address, optionally with a display name: `Riverbend Clinic <care@riverbend.example>`."""
        value = self._get(name)
        if value is None:
            return None
        address = parseaddr(value)[1]
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError:
            raise SettingsError(f"{name}={value!r} is not an email address, e.g. "
                                "care@clinic.example or Clinic Name <care@clinic.example>") from None
        return value

    def _sid(self, name: str, prefix: str, what: str) -> str | None:
        value = self._get(name)
        if value is not None and not (value.startswith(prefix) and _SID_DIGITS.match(value[len(prefix):])):
            # The value itself may be a secret pasted into the wrong variable: never echoed.
            raise SettingsError(f"{name} is not {what}: {prefix} and 32 hexadecimal digits "
                                "(copy it from the Twilio console)")
        return value

    def _sender_number(self, name: str) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise SettingsError(f"{name}={value!r} is not a phone number with its +country code, "
                                "e.g. +17805550100")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    # -- the settings ----------------------------------------------------------------------

    @cached_property
    def database_url(self) -> str:
        url = self._get("DATABASE_URL", DEFAULT_DATABASE_URL)
        hint = "use sqlite:///FILE (one machine) or postgres://USER:PASSWORD@HOST/DATABASE"
        scheme = url.split(":", 1)[0].lower()
        # Hosting platforms hand out postgres://; SQLAlchemy wants a driver named.
        if scheme in ("postgres", "postgresql"):
            url = "postgresql+psycopg" + url[len(scheme):]
            scheme = "postgresql+psycopg"
        if scheme not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
            raise SettingsError(f"DATABASE_URL scheme {scheme!r} is not supported; {hint}")
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise SettingsError(f"DATABASE_URL is not a database URL; {hint}") from None
        if parsed.get_backend_name() == "sqlite" and not parsed.database:
            raise SettingsError(f"DATABASE_URL names no database file; {hint}")
        return url

    def database_shown(self) -> str:
        """The database URL fit for a log line: the password masked."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @cached_property
    def config_dir(self) -> Path:
        return Path(self._get("DRIPCARE_CONFIG_DIR", "config"))

    @cached_property
    def messages_dir(self) -> Path:
        return Path(self._get("DRIPCARE_MESSAGES_DIR", "messages"))

    @cached_property
    def outbox_dir(self) -> Path:
        return Path(self._get("DRIPCARE_OUTBOX_DIR", "outbox"))

    @cached_property
    def sms_transport(self) -> str:
        return self._choice("DRIPCARE_SMS_TRANSPORT", "console", ("console", "file", "twilio"))

    @cached_property
    def email_transport(self) -> str:
        return self._choice("DRIPCARE_EMAIL_TRANSPORT", "console", ("console", "file", "smtp"))

    @cached_property
    def sms_rate(self) -> float:
        return self._number("DRIPCARE_SMS_RATE", "1", float)

    @cached_property
    def email_rate(self) -> float:
        return self._number("DRIPCARE_EMAIL_RATE", "5", float)

    @cached_property
    def dispatch_interval(self) -> float:
        return self._number("DRIPCARE_DISPATCH_INTERVAL", "15", float)

    @cached_property
    def dispatch_batch(self) -> int:
        return self._number("DRIPCARE_DISPATCH_BATCH", "200")

    @cached_property
    def send_concurrency(self) -> int:
        return self._number("DRIPCARE_SEND_CONCURRENCY", "8", maximum=256)

    @cached_property
    def log_format(self) -> str:
        return self._choice("DRIPCARE_LOG_FORMAT", "text", ("text", "json"))

    @cached_property
    def public_base_url(self) -> str | None:
        return self._url("DRIPCARE_PUBLIC_BASE_URL", "https://care.example.org")

    @cached_property
    def secret_key(self) -> str | None:
        return self._get("DRIPCARE_SECRET_KEY")

    @cached_property
    def secret_key_old(self) -> str | None:
        return self._get("DRIPCARE_SECRET_KEY_OLD")

    @cached_property
    def email_from(self) -> str | None:
        return self._email("EMAIL_FROM")

    @cached_property
    def email_reply_to(self) -> str | None:
        return self._email("EMAIL_REPLY_TO")

    @cached_property
    def now_spec(self) -> str | None:
        return self._get("DRIPCARE_NOW")

    def clock(self) -> Clock:
        if self.now_spec is None:
            return SystemClock()
        try:
            start, speed = parse_now_spec(self.now_spec)
        except ValueError as error:
            raise SettingsError(f"DRIPCARE_NOW: {error}") from None
        return SimulatedClock(start, speed)

    def clock_shown(self) -> str:
        """Which clock the process runs on, for its first log lines and `status`."""
        if self.now_spec is None:
            return "system clock"
        start, speed = parse_now_spec(self.now_spec)
        return (f"simulated clock DRIPCARE_NOW={self.now_spec} (from {start.isoformat()} at {speed:g}x; "
                "rehearsals only, never in production)")

    # -- what the real transports need --------------------------------------------------------

    def twilio_auth_token(self, why: str) -> str:
        return self._required("TWILIO_AUTH_TOKEN", why)

    def twilio(self) -> dict[str, str | None]:
        """The twilio SMS transport's settings; SettingsError naming every problem at once."""
        p = _Problems()
        sid = p.read(self._sid, "TWILIO_ACCOUNT_SID", "AC", "an account SID")
        if self._get("TWILIO_ACCOUNT_SID") is None:
            p.add("TWILIO_ACCOUNT_SID is not set; the twilio SMS transport needs the account SID")
        token = p.read(self.twilio_auth_token, "the twilio SMS transport needs it")
        service = p.read(self._sid, "TWILIO_MESSAGING_SERVICE_SID", "MG", "a messaging service SID")
        sender = p.read(self._sender_number, "TWILIO_FROM_NUMBER")
        if self._get("TWILIO_MESSAGING_SERVICE_SID") is None and self._get("TWILIO_FROM_NUMBER") is None:
            p.add("TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER must be set: the twilio SMS transport "
                  "needs a sender")
        base = p.read(self._url, "TWILIO_API_BASE_URL", "https://api.twilio.com")
        p.raise_any()
        return {"account_sid": sid, "auth_token": token, "messaging_service_sid": service,
                "from_number": sender, "api_base_url": base}

    def smtp(self) -> dict[str, object]:
        """The smtp email transport's settings; SettingsError naming every problem at once."""
        p = _Problems()
        host = p.read(self._required, "SMTP_HOST", "the smtp email transport needs a server")
        security = p.read(self._choice, "SMTP_SECURITY", "starttls", ("starttls", "ssl", "none"))
        port = p.read(self._number, "SMTP_PORT", "465" if security == "ssl" else "587", int, 0, 65535)
        username, password = self._get("SMTP_USERNAME"), self._get("SMTP_PASSWORD")
        if username and not password:
            p.add("SMTP_PASSWORD is not set; SMTP_USERNAME is, and the server will want both")
        sender = p.read(self._email, "EMAIL_FROM")
        if self._get("EMAIL_FROM") is None:
            p.add("EMAIL_FROM is not set; the smtp email transport needs a From address")
        reply_to = p.read(self._email, "EMAIL_REPLY_TO")
        p.raise_any()
        return {"host": host, "port": port, "security": security, "username": username, "password": password,
                "email_from": sender, "reply_to": reply_to}

    def transports(self) -> dict[str, str]:
        """Each channel's transport with everything it needs: one check for every start-up
        that sends. A real transport with a missing setting is an error, never a console."""
        p = _Problems()
        sms = p.read(lambda: self.sms_transport)
        email = p.read(lambda: self.email_transport)
        if sms == "twilio":
            p.read(self.twilio)
        if email == "smtp":
            p.read(self.smtp)
            if p.read(lambda: self.public_base_url) is None and self._get("DRIPCARE_PUBLIC_BASE_URL") is None:
                p.add("DRIPCARE_PUBLIC_BASE_URL is not set; the smtp email transport needs it for unsubscribe links")
        if sms is not None and email is not None:
            p.read(self.unsubscribe_keys)
        p.raise_any()
        return {"sms": sms, "email": email}

    def unsubscribe_keys(self) -> list[str]:
        """The key that signs unsubscribe links, then the old one that still verifies them.
        With only development transports a fixed key stands in for a missing one, so a
        demo's links work in the local web process; a real transport requires the key."""
        signer = self.secret_key
        if signer is None:
            if not (self.sms_transport in DEVELOPMENT_TRANSPORTS and self.email_transport in DEVELOPMENT_TRANSPORTS):
                raise SettingsError("DRIPCARE_SECRET_KEY is not set; a real transport needs it to sign unsubscribe links")
            signer = DEVELOPMENT_KEY
        return [signer] + ([self.secret_key_old] if self.secret_key_old else [])
