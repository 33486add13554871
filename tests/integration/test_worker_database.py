"""What a database that refuses work said, read from real errors (a SQLite file opened
read-only by SQLite itself, a PostgreSQL port nobody listens on, a broken constraint), and
the worker's once-a-minute account of it (SPEC 7 "Workers")."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from dripcare.app.workers import DatabaseWatch, database_trouble
from dripcare.store.db import make_engine, transaction, upgrade
from tests.support.twilio_fakes import free_port


def _error(engine, sql: str, *params) -> Exception:
    with pytest.raises(Exception) as info:
        with transaction(engine) as session:
            session.execute(sa.text(sql), *params)
    return info.value


def test_a_read_only_file_is_told_as_such_and_its_connection_is_not_kept(tmp_path):
    path = tmp_path / "care.db"
    upgrade(make_engine(f"sqlite:///{path}"))
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    error = _error(read_only, "INSERT INTO channel_state (channel, paused) VALUES ('sms', true)")
    assert database_trouble(error) == "read-only"
    # SQLite keeps such a connection read-only for good: the pool must not hand it out again.
    assert getattr(error, "connection_invalidated", False) is True


def test_an_unreachable_postgres_is_told_as_such():
    engine = make_engine(f"postgresql+psycopg://dripcare@127.0.0.1:{free_port()}/care?connect_timeout=2")
    with pytest.raises(Exception) as info:
        with engine.connect():
            pass
    assert database_trouble(info.value) == "unreachable"


def test_a_broken_rule_or_a_bug_is_not_an_outage(engine):
    with transaction(engine) as session:
        session.execute(sa.text("INSERT INTO channel_state (channel, paused) VALUES ('sms', true)"))
    duplicate = _error(engine, "INSERT INTO channel_state (channel, paused) VALUES ('sms', true)")
    assert database_trouble(duplicate) is None
    assert database_trouble(ValueError("a bug")) is None


class Ticks:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_told_once_a_minute_and_its_end_once(tmp_path, caplog):
    path = tmp_path / "care.db"
    upgrade(make_engine(f"sqlite:///{path}"))
    refused = _error(make_engine(f"sqlite:///file:{path}?mode=ro&uri=true"),
                     "INSERT INTO channel_state (channel, paused) VALUES ('sms', true)")
    clock = Ticks()
    watch = DatabaseWatch(logging.getLogger("test.watch"), clock=clock)
    with caplog.at_level(logging.INFO, logger="test.watch"):
        for _ in range(30):  # a pass every 2 s for a minute
            watch.failed("a dispatch pass", refused)
            clock.now += 2
        watch.failed("the heartbeat", refused)  # a minute on: told again
        clock.now += 5
        watch.succeeded()
        watch.succeeded()  # said once
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert all("cannot be written (read-only)" in line for line in lines[:2])
    assert "takes writes again after 65 s" in lines[2] and not watch.refusing
    assert not any(r.exc_info for r in caplog.records)  # no traceback for an outage


def test_any_other_error_gets_its_traceback_once_then_a_line_a_minute(caplog):
    clock = Ticks()
    watch = DatabaseWatch(logging.getLogger("test.watch"), clock=clock)
    with caplog.at_level(logging.INFO, logger="test.watch"):
        for _ in range(40):
            try:
                raise KeyError("surprise")
            except KeyError as error:
                watch.failed("a dispatch pass", error)
            clock.now += 2
    assert [bool(r.exc_info) for r in caplog.records] == [True, False]
    assert "a dispatch pass failed again: KeyError" in caplog.records[1].getMessage()
