"""A database that cannot be written, under a running worker (SPEC 7 "Workers"): one log line a
minute saying so, no traceback per pass, no crash, and everything sent exactly once when
writing works again. Made for real: the SQLite file and its WAL made immutable (chattr +i,
which stops root too), and the file on a tiny tmpfs filled to the last byte. CI runs as
root; elsewhere these skip, saying why.

The messages fall due while the database refuses writes, so the worker must notice, wait,
and send them once it can. A blocked shared-memory file (-shm) kills SQLite with SIGBUS:
that death is not silent either."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.fleet import Worker, add_burst_campaign, environment, patients_csv, run, wait_for

START = "2027-03-01T15:00:00Z"  # 10:00 in New York
SPEED = 60  # a simulated minute per real second: the notes fall due 4 s after the worker starts
NOTES, PATIENTS = 3, 2


def _can_chattr(folder: Path) -> str | None:
    """Why `chattr +i` cannot be used here, or None."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return "needs root and chattr"
    probe = folder / "probe"
    probe.write_text("x")
    done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True)
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    probe.unlink()
    return None if done.returncode == 0 else f"this filesystem has no immutable flag: {done.stderr.decode()[:80]}"


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


@pytest.fixture
def clinic(clinic_dir, tmp_path):
    """The clinic's notes due 4 simulated minutes after enrollment, on a database file the
    test chooses; the worker's settings."""
    add_burst_campaign(clinic_dir, NOTES, offset="+4m")

    def prepare(database: Path) -> dict[str, str]:
        base = environment(f"sqlite:///{database}", clinic_dir, DRIPCARE_NOW=START)
        csv = patients_csv(tmp_path / "p.csv", PATIENTS, "burst", "2027-03-20 10:00")
        imported = run(base, tmp_path, "import", str(csv))
        assert imported.returncode == 0, imported.stderr
        return {**base, "DRIPCARE_NOW": f"{START} x{SPEED}", "DRIPCARE_SMS_TRANSPORT": "file",
                "DRIPCARE_EMAIL_TRANSPORT": "file", "DRIPCARE_OUTBOX_DIR": str(tmp_path / "outbox"),
                "DRIPCARE_DISPATCH_INTERVAL": "0.5", "DRIPCARE_SMS_RATE": "5"}
    return prepare


def _sent(tmp_path: Path) -> list[int]:
    path = tmp_path / "outbox" / "sms.jsonl"
    return [json.loads(line)["message_id"] for line in path.read_text().splitlines()] if path.exists() else []


def _refusals(log: str) -> int:
    return log.count("the database cannot be written")


def _outage_then_recovery(worker: Worker, tmp_path: Path, why: tuple[str, ...], restore) -> None:
    """The worker tells the outage once, survives it sending nothing, and after `restore`
    sends every note exactly once and says the database takes writes again."""
    try:
        assert wait_for(lambda: _refusals(worker.log()) >= 1, limit=30), worker.log()
        # Meanwhile every note falls due (4 simulated minutes) and every pass would fail.
        assert wait_for(lambda: worker.process.poll() is not None, limit=7) is False, worker.log()
        log = worker.log()
        assert _refusals(log) == 1 and any(f"cannot be written ({w}" in log for w in why), log  # not once a pass
        assert "Traceback" not in log and _sent(tmp_path) == []
    finally:
        restore()
    try:
        assert wait_for(lambda: len(_sent(tmp_path)) == NOTES * PATIENTS, limit=30), worker.log()
    finally:
        assert worker.stop() == 0, worker.log()
    sent = _sent(tmp_path)
    assert len(set(sent)) == len(sent) == NOTES * PATIENTS  # every note, each once
    log = worker.log()
    assert "the database takes writes again" in log and "Traceback" not in log, log


def test_a_read_only_database_file_is_told_once_and_nothing_is_lost(clinic, tmp_path):
    reason = _can_chattr(tmp_path)
    if reason:
        pytest.skip(reason)
    database = tmp_path / "care.db"
    env = clinic(database)
    worker = Worker(env, tmp_path, tmp_path / "worker.log")
    wal = Path(f"{database}-wal")
    assert wait_for(lambda: "started" in worker.log() and wal.exists(), limit=30), worker.log()
    _chattr("+i", database, wal)  # root cannot write it either; -shm stays writable
    _outage_then_recovery(worker, tmp_path, ("read-only", "the disk refused a write"),
                          lambda: _chattr("-i", database, wal))


def test_a_full_disk_is_told_once_and_nothing_is_lost(clinic, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:100]}")
    filler = small / "filler"
    try:
        database = small / "care.db"
        env = clinic(database)
        worker = Worker(env, tmp_path, tmp_path / "worker.log")
        assert wait_for(lambda: "started" in worker.log(), limit=30), worker.log()
        # An empty WAL, then not a byte left: the worker's next write needs room it cannot get.
        with sqlite3.connect(database) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _fill(filler)
        _outage_then_recovery(worker, tmp_path, ("disk full",), filler.unlink)
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_a_blocked_shared_memory_file_is_not_a_silent_death(clinic, tmp_path):
    reason = _can_chattr(tmp_path)
    if reason:
        pytest.skip(reason)
    database = tmp_path / "care.db"
    env = clinic(database)
    worker = Worker(env, tmp_path, tmp_path / "worker.log")
    shm = Path(f"{database}-shm")
    assert wait_for(lambda: "started" in worker.log() and shm.exists(), limit=30), worker.log()
    _chattr("+i", shm)
    try:
        # SQLite maps the -shm file; a write to an immutable mapping is SIGBUS, which no
        # Python code can catch. What the worker can do is die saying so.
        assert wait_for(lambda: worker.process.poll() is not None, limit=30), worker.log()
    finally:
        _chattr("-i", shm)
        worker.stop()
    log = worker.log()
    # The bus error ends it; faulthandler, writing the threads' stacks out of a broken
    # mapping, may itself fault once more, so the exit is SIGBUS or, now and then, SIGSEGV.
    assert worker.process.returncode in (-signal.SIGBUS, -signal.SIGSEGV), worker.process.returncode
    assert "database: sqlite:///" in log.splitlines()[2]  # it had said what it was using
    assert "Fatal Python error: Bus error" in log  # and why it died, whichever signal ended it


def _fill(path: Path) -> None:
    """Writes until the filesystem has not a byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
