"""Schema changes go through Alembic (SPEC 5): `dripcare db upgrade` builds the schema from
empty and from every earlier revision, on SQLite and on PostgreSQL, keeping the rows it
finds; the migrations build exactly the tables the models say (`alembic check`); and they
go down and up again."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from dripcare.config.settings import Settings
from dripcare.store import models  # noqa: F401
from dripcare.store.db import MIGRATIONS, alembic_config, current_revision, ensure_schema, make_engine

from tests.support.fleet import fresh_postgres

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
REVISIONS = [r.revision for r in reversed(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions()))]
WHEN = datetime(2027, 3, 1, 15, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty database of each kind, as DATABASE_URL gives it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.db'}"
    return fresh_postgres(request.getfixturevalue("postgres_server"))


def _engine(url: str):
    return make_engine(Settings({"DATABASE_URL": url}).database_url)


def _matches_the_models(engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)


def test_the_revisions_are_one_line_from_empty_to_head():
    assert REVISIONS[0] == "0001" and REVISIONS[-1] == HEAD and len(set(REVISIONS)) == len(REVISIONS)


def test_db_upgrade_from_empty_builds_what_the_models_say(cli, database_url):
    result = cli("db", "upgrade", env={"DATABASE_URL": database_url})
    assert result.code == 0, result.err
    engine = _engine(database_url)
    try:
        assert current_revision(engine) == HEAD
        assert _matches_the_models(engine) == []
        command.check(alembic_config(engine))  # `alembic check`: no change the models need is missing
        assert cli("db", "upgrade", env={"DATABASE_URL": database_url}).code == 0  # twice is fine
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


@pytest.mark.parametrize("start", REVISIONS[:-1])
def test_db_upgrade_from_every_earlier_revision_keeps_the_rows(cli, database_url, start):
    engine = _engine(database_url)
    try:
        command.upgrade(alembic_config(engine), start)
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO patient (first_name, last_name, phone_invalid, email_invalid, timezone, locale, "
                "discreet, created_at) VALUES ('Ana', 'Diaz', false, false, 'America/New_York', 'en', false, :at)"),
                {"at": WHEN.replace(tzinfo=None)})
            connection.execute(sa.text("INSERT INTO worker (id, hostname, pid, started_at, heartbeat_at) "
                                       "VALUES ('old', 'h', 1, :at, :at)"), {"at": WHEN.replace(tzinfo=None)})
        result = cli("db", "upgrade", env={"DATABASE_URL": database_url})
        assert result.code == 0, result.err
        assert current_revision(engine) == HEAD and _matches_the_models(engine) == []
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT first_name FROM patient")).scalars().all() == ["Ana"]
            assert connection.execute(sa.text("SELECT id FROM worker")).scalars().all() == ["old"]
    finally:
        engine.dispose()


def test_migrations_go_down_to_empty_and_up_again(database_url):
    engine = _engine(database_url)
    try:
        config = alembic_config(engine)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        with engine.connect() as connection:
            assert set(sa.inspect(connection).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        assert current_revision(engine) == HEAD and _matches_the_models(engine) == []
    finally:
        engine.dispose()


def test_migrations_match_the_models(engine):
    assert _matches_the_models(engine) == []
    command.check(alembic_config(engine))


def test_the_sqlite_file_is_created_and_migrated_on_first_use_with_its_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    ensure_schema(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert "message" in sa.inspect(connection).get_table_names()
    engine.dispose()
