"""The database as a command opens it (SPEC 5): the schema created or checked, or upgraded
on `dripcare db upgrade`, and one line saying why when it cannot be."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from dripcare.app.runtime import open_database
from dripcare.config.clock import Clock
from dripcare.config.settings import Settings, SettingsError
from dripcare.store.db import DatabaseBehind, make_engine, upgrade


class DatabaseUnavailable(Exception):
    """One line: the database is behind the code, unreachable, or not a database."""


def opened(settings: Settings) -> tuple[Engine, Clock]:
    """The engine (schema checked; the embedded SQLite file created on first use) and the clock."""
    try:
        return open_database(settings)
    except SettingsError:
        raise
    except DatabaseBehind as error:  # its own line says to run `dripcare db upgrade`
        raise DatabaseUnavailable(str(error)) from None
    except Exception as error:  # the driver's own: unreachable, refused, not a database
        raise DatabaseUnavailable(f"cannot open the database at DATABASE_URL: {_first_line(error)}") from None


def upgraded(settings: Settings) -> None:
    """`dripcare db upgrade` (the Procfile's release line)."""
    try:
        upgrade(make_engine(settings.database_url))
    except SettingsError:
        raise
    except Exception as error:
        raise DatabaseUnavailable(f"cannot upgrade the database: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
