"""A runtime on the `cli` fixture's own database, so a course played through the real
dispatcher on a virtual clock can then be looked at with the CLI, as staff would."""

from __future__ import annotations

import pytest

from dripcare.app.runtime import Runtime
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.config.clock import VirtualClock
from dripcare.store.db import make_engine, upgrade
from tests.conftest import START


@pytest.fixture
def cli_rt(tmp_path, clinic_dir):
    """The Runtime of the `cli` fixture's SQLite file, on a virtual clock from its DRIPCARE_NOW."""
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    upgrade(engine)
    clinic = load_clinic(clinic_dir / "config")
    rt = Runtime(engine, clinic, load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages"),
                 VirtualClock(START), config_dir=clinic_dir / "config", messages_dir=clinic_dir / "messages")
    yield rt
    engine.dispose()
