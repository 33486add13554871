"""`dripcare demo` as a new user runs it: whatever the environment says, it uses the
example clinic, a throw-away database and the console, and runs a whole course."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DRIPCARE = str(Path(sys.executable).parent / "dripcare")


def test_demo_runs_a_whole_course_and_ignores_the_environment(tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://nobody@127.0.0.1:1/none\n")
    env = dict(os.environ, DRIPCARE_SMS_TRANSPORT="twilio", DRIPCARE_EMAIL_TRANSPORT="smtp",
               DRIPCARE_CONFIG_DIR=str(tmp_path / "missing"), DRIPCARE_NOW="garbage")
    result = subprocess.run([DRIPCARE, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Summary per step" in out and "messages sent through the real dispatcher" in out
    sent = int(out.strip().splitlines()[-1].split()[0])
    assert sent >= 30
    for step in ("welcome", "prep-week", "what-to-expect", "day-of", "integration", "course-complete",
                 "follow-up-month"):
        assert step in out
    assert "(discreet)" in out and "ketamine" not in _lines_for(out, "Benny", "sms")
    assert list(tmp_path.iterdir()) == [tmp_path / ".env"]  # nothing written where it ran


def _lines_for(out: str, name: str, channel: str) -> str:
    return "\n".join(line for line in out.splitlines() if f" {name} " in line and f" {channel} " in line).lower()
