"""Running dripcare as operators do: real `dripcare` processes on a real SQLite file, and a
loopback Twilio that records when each request reached it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

DRIPCARE = str(Path(sys.executable).parent / "dripcare")
SETTING_PREFIXES = ("DRIPCARE_", "TWILIO_", "SMTP_", "EMAIL_", "DATABASE_URL")


def base_env(database: Path, clinic_dir: Path, now: str, **extra: str) -> dict[str, str]:
    """The machine's environment without any dripcare setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(DATABASE_URL=f"sqlite:///{database}", DRIPCARE_CONFIG_DIR=str(clinic_dir / "config"),
               DRIPCARE_MESSAGES_DIR=str(clinic_dir / "messages"), DRIPCARE_NOW=now)
    env.update(extra)
    return env


def twilio_env(twilio: FakeTwilio, public_url: str) -> dict[str, str]:
    """Settings for the real Twilio transport, pointed at the loopback Twilio."""
    return dict(DRIPCARE_SMS_TRANSPORT="twilio", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                TWILIO_FROM_NUMBER=FROM_NUMBER, TWILIO_API_BASE_URL=twilio.url,
                DRIPCARE_PUBLIC_BASE_URL=public_url, DRIPCARE_SECRET_KEY="test-secret-key")


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DRIPCARE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([DRIPCARE, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, limit: float = 60.0) -> bool:
    """Polls a real process's observable effect, bounded: waiting on a subprocess is the point."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class ClockedTwilio(FakeTwilio):
    """The loopback Twilio, noting the wall-clock instant each create request reached it."""

    def __init__(self):
        super().__init__()
        self.arrivals: list[tuple[datetime, dict[str, str]]] = []
        self._lock = threading.Lock()

    def created_answer(self, form: dict[str, str]):
        with self._lock:
            self.arrivals.append((datetime.now(timezone.utc), form))
        return super().created_answer(form)

    def to(self, number: str) -> list[datetime]:
        with self._lock:
            return [at for at, form in self.arrivals if form.get("To") == number]
