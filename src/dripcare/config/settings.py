"""Typed settings from the environment and `.env` (SPEC 3.1).

Each value is parsed when a command first asks for it, so a command checks only the
settings it uses (`timeline` never needs Twilio credentials), and a bad value stops
the process with one line naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from dotenv import dotenv_values

from dripcare.config.clock import Clock, SimulatedClock, SystemClock, parse_now_spec

DEVELOPMENT_KEY = "development-only-key"  # never used once a real transport is on


class SettingsError(Exception):
    """One line per bad setting: the variable, what is wrong, how to fix it. `lines`
    holds them one by one (`Settings.validate` gathers every problem at once)."""

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or [message]


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
        """Check the named settings (properties, or `twilio`, `smtp`, `unsubscribe_keys`,
        `clock`) all at once; SettingsError with one line per bad one."""
        problems: list[str] = []
        for name in names:
            try:
                value = getattr(self, name)
                if callable(value):
                    value()
            except SettingsError as error:
                problems += [line for line in error.lines if line not in problems]
        if problems:
            raise SettingsError("\n".join(problems), problems)

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

    def _number(self, name: str, default: str, kind=int, minimum: float = 0):
        raw = self._get(name, default)
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
        if value <= minimum:
            raise SettingsError(f"{name}={raw!r} must be above {minimum:g}")
        return value

    @cached_property
    def database_url(self) -> str:
        url = self._get("DATABASE_URL", "sqlite:///dripcare.store.db")
        scheme = url.split(":", 1)[0]
        # Hosting platforms hand out postgres://; SQLAlchemy wants a driver named.
        if scheme in ("postgres", "postgresql"):
            return "postgresql+psycopg" + url[len(scheme):]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql+")):
            raise SettingsError(f"DATABASE_URL scheme {scheme!r} is not supported; use sqlite:///FILE or postgres://...")
        return url

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
        return self._number("DRIPCARE_SEND_CONCURRENCY", "8")

    @cached_property
    def log_format(self) -> str:
        return self._choice("DRIPCARE_LOG_FORMAT", "text", ("text", "json"))

    @cached_property
    def public_base_url(self) -> str | None:
        url = self._get("DRIPCARE_PUBLIC_BASE_URL")
        if url is None:
            return None
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SettingsError(f"DRIPCARE_PUBLIC_BASE_URL={url!r} is not an http(s) URL, e.g. https://care.example.org")
        return url.rstrip("/")

    @cached_property
    def secret_key(self) -> str | None:
        return self._get("DRIPCARE_SECRET_KEY")

    @cached_property
    def secret_key_old(self) -> str | None:
        return self._get("DRIPCARE_SECRET_KEY_OLD")

    @cached_property
    def email_from(self) -> str | None:
        return self._get("EMAIL_FROM")

    @cached_property
    def email_reply_to(self) -> str | None:
        return self._get("EMAIL_REPLY_TO")

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

    # Twilio and SMTP settings are read only by the transports that use them.
    def twilio_auth_token(self, why: str) -> str:
        return self._required("TWILIO_AUTH_TOKEN", why)

    def twilio(self) -> dict[str, str | None]:
        sid = self._required("TWILIO_ACCOUNT_SID", "the twilio SMS transport needs the account SID")
        token = self.twilio_auth_token("the twilio SMS transport needs it")
        service = self._get("TWILIO_MESSAGING_SERVICE_SID")
        sender = self._get("TWILIO_FROM_NUMBER")
        if not (service or sender):
            raise SettingsError("TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER must be set: the twilio SMS transport needs a sender")
        base = self._get("TWILIO_API_BASE_URL")
        if base and urlparse(base).scheme not in ("http", "https"):
            raise SettingsError(f"TWILIO_API_BASE_URL={base!r} is not an http(s) URL")
        return {"account_sid": sid, "auth_token": token, "messaging_service_sid": service,
                "from_number": sender, "api_base_url": base}

    def smtp(self) -> dict[str, object]:
        host = self._required("SMTP_HOST", "the smtp email transport needs a server")
        security = self._choice("SMTP_SECURITY", "starttls", ("starttls", "ssl", "none"))
        port = self._number("SMTP_PORT", "465" if security == "ssl" else "587")
        sender = self._required("EMAIL_FROM", "the smtp email transport needs a From address")
        return {"host": host, "port": port, "security": security,
                "username": self._get("SMTP_USERNAME"), "password": self._get("SMTP_PASSWORD"),
                "email_from": sender, "reply_to": self.email_reply_to}

    def unsubscribe_keys(self) -> list[str]:
        """The key that signs unsubscribe links, then the old one that still verifies them.
        With only development transports a fixed key stands in for a missing one, so a
        demo's links work in the local web process; a real transport requires the key."""
        signer = self.secret_key
        if signer is None:
            if not (self.sms_transport in ("console", "file") and self.email_transport in ("console", "file")):
                raise SettingsError("DRIPCARE_SECRET_KEY is not set; a real transport needs it to sign unsubscribe links")
            signer = DEVELOPMENT_KEY
        return [signer] + ([self.secret_key_old] if self.secret_key_old else [])
