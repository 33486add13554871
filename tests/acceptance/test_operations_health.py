"""Honest health (SPEC 5 `worker`, 7 "Workers", 8 `/healthz/worker`): heartbeats in real time
whatever DRIPCARE_NOW says; a worker silent for 3 dispatch intervals is stopped in `status`
and pages through `/healthz/worker`; one worker per SQLite file; `status` shows the clock,
the send rate against what went out, and refused clinic files by name. Real processes:
`dripcare worker`, the Procfile's gunicorn, `dripcare status`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from dripcare.app import workers
from dripcare.store import workers as worker_rows
from dripcare.store.db import transaction
from tests.support.fleet import Web, Worker, add_burst_campaign, environment, patients_csv, run, wait_for

START = "2027-03-01T15:00:00Z"  # 10:00 in New York
INTERVAL = 1.0
WEB = {"TWILIO_AUTH_TOKEN": "test-auth-token", "DRIPCARE_PUBLIC_BASE_URL": "https://care.example.org",
       "DRIPCARE_SECRET_KEY": "test-secret-key-0123456789abcdef"}


@pytest.fixture
def clinic(clinic_dir, tmp_path):
    """Two patients with three SMS due at enrollment, on a SQLite file; the worker's settings."""
    database = f"sqlite:///{tmp_path / 'care.db'}"
    add_burst_campaign(clinic_dir, 3)
    base = environment(database, clinic_dir, DRIPCARE_NOW=START)
    imported = run(base, tmp_path, "import", str(patients_csv(tmp_path / "p.csv", 2, "burst", "2027-03-20 10:00")))
    assert imported.returncode == 0, imported.stderr
    return environment(database, clinic_dir, DRIPCARE_SMS_TRANSPORT="file", DRIPCARE_EMAIL_TRANSPORT="file",
                       DRIPCARE_OUTBOX_DIR=str(tmp_path / "outbox"), DRIPCARE_DISPATCH_INTERVAL=str(INTERVAL))


def _status(env, cwd) -> dict:
    result = run(env, cwd, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _running(env) -> int:
    """Workers `status` would show running, read in this process (polling a subprocess is slow)."""
    from dripcare.store.db import make_engine

    engine = make_engine(env["DATABASE_URL"])
    try:
        return sum(1 for w in workers.workers_shown(engine, INTERVAL) if w["state"] == "running")
    finally:
        engine.dispose()


def _refused_files(env) -> dict:
    from dripcare.app.status import campaign_errors
    from dripcare.store.db import make_engine
    from sqlmodel import Session

    engine = make_engine(env["DATABASE_URL"])
    try:
        with Session(engine) as session:
            return campaign_errors(session)
    finally:
        engine.dispose()


def _sent(tmp_path) -> int:
    path = tmp_path / "outbox" / "sms.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_killed_worker_on_a_simulated_clock_shows_stopped_and_pages(clinic, clinic_dir, tmp_path):
    env = {**clinic, "DRIPCARE_NOW": f"{START} x100"}
    worker = Worker(env, tmp_path, tmp_path / "worker.log")
    web = Web({**env, **WEB}, tmp_path / "app")
    try:
        assert wait_for(web.up, limit=30), web.log()
        assert wait_for(lambda: web.get("/healthz/worker").status_code == 200, limit=30), worker.log()
        assert wait_for(lambda: _sent(tmp_path) == 6, limit=30), worker.log()
        burst = clinic_dir / "config" / "campaigns" / "burst.toml"
        burst.write_text(burst.read_text().replace('anchor = "enrollment"', 'anchor = "whenever"', 1))
        assert wait_for(lambda: "campaigns/burst.toml" in _refused_files(env), limit=30)

        snap = _status(env, tmp_path)
        (shown,) = snap["workers"]
        assert shown["state"] == "running" and 0 <= shown["heartbeat_age_seconds"] < 3 * INTERVAL
        assert shown["simulated_at"] > "2027-03-01T15"  # the simulated time beside the real heartbeat
        beat = datetime.fromisoformat(shown["last_heartbeat_at"])  # the heartbeat itself in real time
        assert abs(datetime.now(timezone.utc) - beat) < timedelta(seconds=3 * INTERVAL + 5)
        assert "simulated clock" in snap["clock"] and "x100" in snap["simulated_clock"]
        assert snap["send_rates"]["sms"]["configured_per_second"] == 1
        assert snap["send_rates"]["sms"]["sent_last_minute"] == 6
        assert "whenever" in snap["campaign_errors"]["campaigns/burst.toml"]
        text = run(env, tmp_path, "status").stdout
        assert "workers: 1 running, 0 stopped" in text and "clinic file campaigns/burst.toml" in text
        assert "send rate sms: 1/s configured for the deployment; 6 sent in the last minute" in text

        worker.kill()
        assert wait_for(lambda: web.get("/healthz/worker").status_code == 503, limit=3 * INTERVAL + 15)
        snap = _status(env, tmp_path)
        (shown,) = snap["workers"]
        assert (shown["state"], shown["stopped"], shown["heartbeat_age_seconds"]) == ("stopped", "no heartbeat", None)
        assert snap["workers_running"] == 0
        assert "workers: 0 running, 1 stopped" in run(env, tmp_path, "status").stdout
        assert web.get("/healthz").status_code == 200  # the web keeps answering STOP without a worker
    finally:
        worker.process.kill()
        web.stop()


def test_a_second_worker_on_one_sqlite_file_is_refused_in_one_line(clinic, tmp_path):
    first = Worker(clinic, tmp_path, tmp_path / "first.log")
    try:
        assert wait_for(lambda: _running(clinic) == 1, limit=30), first.log()
        second = run(clinic, tmp_path, "worker", timeout=60)
        assert second.returncode == 1 and second.stdout == ""
        (line,) = second.stderr.strip().splitlines()
        assert "another dripcare worker is already running on" in line and "care.db" in line
        once = run(clinic, tmp_path, "dispatch", "--once", timeout=60)  # nor a pass beside it
        assert once.returncode == 1 and len(once.stderr.strip().splitlines()) == 1, once.stderr
        assert first.process.poll() is None  # the first one carries on
        first.kill()  # its lock dies with it: a crash never blocks the next start
        after = Worker(clinic, tmp_path, tmp_path / "after.log")
        assert wait_for(lambda: "started" in after.log(), limit=30), after.log()
        assert wait_for(lambda: _running(clinic) == 1, limit=30), after.log()
        assert after.stop() == 0
        assert "stopped cleanly" in run(clinic, tmp_path, "status").stdout
    finally:
        first.process.kill()


def test_the_first_log_lines_say_what_the_worker_uses(clinic, tmp_path):
    env = {**clinic, "DRIPCARE_SMS_TRANSPORT": "twilio", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
           "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": "+15005550006", "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
           "DRIPCARE_SECRET_KEY": "k" * 32, "DRIPCARE_SMS_RATE": "3"}
    worker = Worker(env, tmp_path, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: "started" in worker.log(), limit=30), worker.log()
    finally:
        assert worker.stop() == 0
    lines = worker.log().splitlines()
    assert "transports sms=twilio, email=file: email development only, its messages reach no patient" in lines[0]
    assert "clock: system clock" in lines[1]
    assert f"database: {clinic['DATABASE_URL']} (SQLite: this worker alone)" in lines[2]
    assert "send rate for the whole deployment: sms 3/s, email 5/s" in lines[3]


# --- in-process: what counts as alive -----------------------------------------------------------

def test_a_heartbeat_from_the_future_or_too_old_is_never_alive(rt):
    now = workers.real_now()
    with transaction(rt.engine) as session:
        # A row an older version wrote on a simulated clock, a clean stop, a silent one, one gone a week.
        worker_rows.beat(session, "future", "h", 1, now + timedelta(days=300), None)
        worker_rows.beat(session, "clean", "h", 2, now - timedelta(seconds=1), None)
        worker_rows.stopped(session, "clean", now)
        worker_rows.beat(session, "silent", "h", 3, now - timedelta(seconds=10 * INTERVAL), None)
        worker_rows.beat(session, "gone", "h", 4, now - timedelta(days=8), None)
    assert workers.heartbeat_age(rt) == pytest.approx(10 * INTERVAL, abs=5)  # the silent one: stale, not healthy
    shown = {w["id"]: (w["state"], w["stopped"]) for w in workers.workers_shown(rt.engine, INTERVAL)}
    assert shown == {"future": ("stopped", "no heartbeat"), "clean": ("stopped", "cleanly"),
                     "silent": ("stopped", "no heartbeat"), "gone": ("stopped", "no heartbeat")}
    assert workers.forget_gone(rt) == 1
    assert {w["id"] for w in workers.workers_shown(rt.engine, INTERVAL)} == {"future", "clean", "silent"}
    workers.heartbeat(rt, "alive")
    assert 0 <= workers.heartbeat_age(rt) < INTERVAL
