"""What every command group shares: settings, config, the database, one-line errors."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from functools import lru_cache
from typing import NoReturn

from rich.console import Console

from dripcare.config.campaigns import load_campaigns
from dripcare.domain.campaign import Campaign
from dripcare.config.clinic import Clinic, ConfigError, load_clinic
from dripcare.config.settings import Settings, SettingsError

# Piped output (tests, logs, `| less`) gets room for a timeline table rather than 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    sys.exit(1)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


def clinic_and_campaigns() -> tuple[Clinic, dict[str, Campaign]]:
    s = settings()
    try:
        clinic = load_clinic(s.config_dir)
        return clinic, load_campaigns(s.config_dir, clinic, s.messages_dir)
    except (ConfigError, SettingsError) as error:
        fail(str(error))


def who(by: str | None) -> str:
    """Who did it: --by, else the OS user."""
    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(document) -> None:
    sys.stdout.write(json.dumps(document, default=_default, indent=2, ensure_ascii=False) + "\n")


def database():
    """The engine (schema checked) and the clock, for commands that need no clinic files:
    `status` must answer even while a campaign file is broken."""
    from dripcare.store.db import DatabaseBehind, ensure_schema, make_engine

    s = settings()
    try:
        engine = make_engine(s.database_url)
        ensure_schema(engine)
        return engine, s.clock()
    except (SettingsError, DatabaseBehind) as error:
        fail(str(error))
    except Exception as error:  # the database is unreachable or not a database
        fail(f"cannot open the database at DATABASE_URL: {type(error).__name__}: {str(error).splitlines()[0]}")


def runtime():
    """Settings, database (schema checked), clinic files and the clock, or one error line."""
    from dripcare.app.runtime import open_runtime
    from dripcare.config.clinic import ConfigError

    engine, clock = database()
    try:
        return open_runtime(settings(), engine=engine, clock=clock)
    except (ConfigError, SettingsError) as error:
        fail(str(error))


def local(instant: datetime | None, tz_name: str) -> str:
    """A UTC instant as the patient reads it: `Wed 2027-06-09 10:00 MDT`."""
    if instant is None:
        return ""
    from dripcare.domain.timing import zone

    return instant.astimezone(zone(tz_name)).strftime("%a %Y-%m-%d %H:%M %Z")


def iso(instant: datetime | None, tz_name: str | None = None) -> str | None:
    """ISO 8601 with offset, in the patient's zone when given."""
    if instant is None:
        return None
    from dripcare.domain.timing import zone

    return (instant.astimezone(zone(tz_name)) if tz_name else instant).isoformat()
