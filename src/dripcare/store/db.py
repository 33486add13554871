"""Engine, SQLite pragmas, schema checks and the one way to open a transaction; what a
database that refuses writes said, and the one-worker lock of a SQLite file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseBehind(Exception):
    """The database schema is older than the code: run `dripcare db upgrade`."""


def make_engine(url: str) -> Engine:
    # hide_parameters: an error's text never carries a row's values (bodies, numbers) into a log.
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Python's sqlite3 opens transactions lazily; we issue BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def on_error(context):
        # SQLite opens a file it may not write read-only, and such a connection stays
        # read-only after the file is writable again: the pool starts afresh instead.
        name = getattr(context.original_exception, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")):
            context.is_disconnect = True

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction
        # waits for a busy writer instead of failing when it tries to upgrade its lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


@lru_cache(maxsize=1)
def _head() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(engine: Engine) -> None:
    """The embedded SQLite file is created and upgraded on first use; any other
    database that is behind the code is refused with one line (SPEC 5)."""
    if current_revision(engine) == _head():
        return
    if engine.url.get_backend_name() == "sqlite":
        upgrade(engine)
        return
    raise DatabaseBehind("the database schema is behind this version of dripcare; run `dripcare db upgrade`")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


# --- a database that refuses writes -------------------------------------------------------

_SQLITE_TROUBLE = (("SQLITE_READONLY", "read-only"), ("SQLITE_FULL", "disk full"),
                   ("SQLITE_BUSY", "locked by another process"), ("SQLITE_LOCKED", "locked by another process"),
                   ("SQLITE_IOERR", "the disk refused a write (read-only, full or failing)"),
                   ("SQLITE_CANTOPEN", "the file cannot be opened"), ("SQLITE_PERM", "permission denied"))


def write_failure(error: BaseException) -> str | None:
    """Why the database refused to work, in a few words (read-only, disk full, locked,
    unreachable), or None when `error` is something else (a bug is not an outage)."""
    original = getattr(error, "orig", None) or error
    name = getattr(original, "sqlite_errorname", None)
    if name:
        return next((why for prefix, why in _SQLITE_TROUBLE if name.startswith(prefix)), None)
    state = getattr(original, "sqlstate", None) or ""
    if state.startswith("53"):
        return "out of disk or memory"
    if state == "25006":
        return "read-only"
    if state.startswith(("08", "57P")):  # connection lost, server shutting down or starting
        return "unreachable"
    # No SQLSTATE at all: the driver never reached a server (refused, DNS, timeout).
    lost = isinstance(error, (exc.OperationalError, exc.InterfaceError)) and not state
    return "unreachable" if lost else None


# --- one worker per SQLite file -----------------------------------------------------------

class WorkerLockHeld(Exception):
    """Another worker holds this SQLite file (SQLite serves one worker)."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database[len("file:"):] if database.startswith("file:") else database).absolute()


def hold_worker_lock(url: str) -> int | None:
    """An exclusive flock on `<db>.worker.lock` for the life of the process: a second
    worker on the same file is refused, and the lock dies with its process (kill -9
    included), so a crash never blocks the next start. None on PostgreSQL (many workers).
    The caller keeps the descriptor open while it works, and may close it to let go."""
    import fcntl  # POSIX only, like the Procfile platforms dripcare runs on

    path = sqlite_file(url)
    if path is None:
        return None
    try:
        fd = os.open(f"{path}.worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a directory we may not write: lock the database file itself
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkerLockHeld(f"another dripcare worker is already running on {path}; SQLite serves one "
                             "worker (stop the other, or use PostgreSQL for more)") from None
    return fd
