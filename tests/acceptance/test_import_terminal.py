"""`dripcare import` of a file of hundreds of rows, as staff run it at a terminal (SPEC 9):
a progress bar while it works, then the one summary line; the same command piped prints
the summary line alone. The real `dripcare` process, on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from datetime import date, timedelta

from tests.support.fleet import DRIPCARE, environment

ROWS_PER_PATIENT = 6
PATIENTS = 60  # 360 rows: past the size where a bar appears


def big_export(path) -> None:
    lines = ["external_id,first_name,last_name,phone,consent_sms,campaign,session_id,session_at"]
    for i in range(PATIENTS):
        for n in range(ROWS_PER_PATIENT):
            day = date(2027, 3, 8) + timedelta(days=i % 10 + 2 * n)
            lines.append(f"MRN-{i},Pat{i},Lee,780555{100 + i:04d},yes,ketamine-iv,A-{i}-{n},{day} 10:00")
    path.write_text("\n".join(lines) + "\n")


def on_a_terminal(env: dict, cwd, *args: str) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; everything it wrote there."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([DRIPCARE, *args], env={**env, "TERM": "xterm", "COLUMNS": "100"}, cwd=cwd,
                               stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed: the process is done writing
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_a_large_import_shows_a_progress_bar_on_a_terminal_and_nothing_extra_when_piped(tmp_path, clinic_dir):
    env = environment(f"sqlite:///{tmp_path / 'dripcare.db'}", clinic_dir, DRIPCARE_NOW="2027-03-01T15:00:00Z")
    big_export(tmp_path / "big.csv")
    code, screen = on_a_terminal(env, tmp_path, "import", "big.csv", "--dry-run")
    assert code == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # the terminal's control sequences
    assert re.search(r"checking .*\d+/360", plain)
    assert "would import 60 patients added" in plain
    code, screen = on_a_terminal(env, tmp_path, "import", "big.csv")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert code == 0, screen
    assert re.search(r"importing .*\d+/60", plain), plain[-2000:]
    assert "imported big.csv: 60 patients added" in plain
    # Piped, the same import prints its summary line and nothing else.
    piped = subprocess.run([DRIPCARE, "import", "big.csv"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert piped.stdout.splitlines() == [
        "imported big.csv: 0 patients added, 0 updated, 60 unchanged; 0 enrollments; sessions: 0 booked, "
        "0 moved, 0 cancelled, 0 otherwise changed; messages: no changes"]


def test_planning_every_patient_again_shows_a_progress_bar_on_a_terminal_and_nothing_when_piped(tmp_path,
                                                                                                 clinic_dir):
    env = environment(f"sqlite:///{tmp_path / 'dripcare.db'}", clinic_dir, DRIPCARE_NOW="2027-03-01T15:00:00Z")
    big_export(tmp_path / "big.csv")
    assert subprocess.run([DRIPCARE, "import", "big.csv"], env=env, cwd=tmp_path, capture_output=True,
                          timeout=120).returncode == 0
    code, screen = on_a_terminal(env, tmp_path, "replan", "--all")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert code == 0, screen
    assert re.search(r"planning again .*60/60", plain), plain[-2000:]
    assert "replanned: no changes" in plain
    piped = subprocess.run([DRIPCARE, "replan", "--all"], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout.splitlines() == ["replanned: no changes"]
