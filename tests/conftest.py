"""Real parts for every test: a SQLite file per test, the example clinic, a virtual clock,
the real CLI entry point, and (session-wide) a throwaway PostgreSQL server."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.config.clock import VirtualClock
from dripcare.config.terms import load_sensitive_terms
from dripcare.store.db import make_engine, upgrade
from dripcare.app.runtime import Runtime

# Fixtures for real servers, shared by every module (one Prism, one PostgreSQL per session).
from tests.support.pg import postgres_server  # noqa: F401
from tests.support.prism import prism_url  # noqa: F401
from tests.support.twilio_fakes import fake_twilio  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "dripcare" / "examples"
START = datetime(2027, 3, 1, 15, 0, tzinfo=timezone.utc)
ENV_PREFIXES = ("DRIPCARE_", "TWILIO_", "SMTP_", "EMAIL_", "DATABASE_URL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No setting leaks in from the machine, no .env from the checkout is read, and the
    root logger a command configured (on this test's captured stderr) is put back."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    from dripcare.cli import common

    common.settings.cache_clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    common.settings.cache_clear()


@pytest.fixture
def clinic_dir(tmp_path) -> Path:
    """A copy of the example config/ and messages/ the test may edit."""
    target = tmp_path / "clinic"
    for name in ("config", "messages"):
        shutil.copytree(EXAMPLES / name, target / name)
    return target


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'dripcare.store.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def rt(engine, clinic_dir, clock) -> Runtime:
    clinic = load_clinic(clinic_dir / "config")
    return Runtime(engine, clinic, load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages"), clock,
                   config_dir=clinic_dir / "config", messages_dir=clinic_dir / "messages",
                   terms=load_sensitive_terms(clinic_dir / "config"))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path, clinic_dir):
    """Run the real `dripcare` entry point in-process on a real SQLite file."""
    from dripcare.cli import common, main

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("DRIPCARE_CONFIG_DIR", str(clinic_dir / "config"))
    monkeypatch.setenv("DRIPCARE_MESSAGES_DIR", str(clinic_dir / "messages"))
    monkeypatch.setenv("DRIPCARE_NOW", START.isoformat().replace("+00:00", "Z"))

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        common.settings.cache_clear()
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def db(tmp_path):
    """Read the `cli` fixture's database directly, as SQL sees it."""
    def query(sql: str, *params):
        with sqlite3.connect(tmp_path / "cli.db") as connection:
            connection.row_factory = sqlite3.Row
            return [dict(r) for r in connection.execute(sql, params)]
    return query
