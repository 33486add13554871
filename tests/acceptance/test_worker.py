"""The worker and `dispatch --once` as operators run them: real processes, a real SQLite
file, the file transport, and signals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import Message, Worker
from tests.support.fleet import DRIPCARE, environment, wait_for



def _env(tmp_path: Path, clinic_dir: Path, now: str, **extra) -> dict[str, str]:
    settings = dict(DRIPCARE_SMS_TRANSPORT="file", DRIPCARE_EMAIL_TRANSPORT="file",
                    DRIPCARE_OUTBOX_DIR=str(tmp_path / "outbox"), DRIPCARE_DISPATCH_INTERVAL="0.2", DRIPCARE_NOW=now)
    return environment(f"sqlite:///{tmp_path / 'worker.db'}", clinic_dir, **{**settings, **extra})


def _enroll(env: dict[str, str], cwd: Path) -> None:
    for args in (["patient", "add", "--first-name", "Ana", "--last-name", "Diaz", "--phone", "+12125550143",
                  "--email", "ana@example.org", "--timezone", "America/New_York", "--consent", "sms",
                  "--consent", "email"],
                 ["enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-04 10:00",
                  "--session", "2027-03-10 10:00"]):
        subprocess.run([DRIPCARE, *args], env=env, cwd=cwd, check=True, capture_output=True, timeout=60)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _db(tmp_path: Path):
    from dripcare.store.db import make_engine

    return make_engine(f"sqlite:///{tmp_path / 'worker.db'}")


def _start(env, cwd) -> subprocess.Popen:
    return subprocess.Popen([DRIPCARE, "worker"], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_worker_sends_due_messages_once_and_stops_cleanly_on_sigterm(tmp_path, clinic_dir):
    env = _env(tmp_path, clinic_dir, "2027-03-01T15:00:00Z")
    _enroll(env, tmp_path)
    worker = _start(env, tmp_path)
    try:
        assert wait_for(lambda: len(_lines(tmp_path / "outbox" / "sms.jsonl")) >= 1
                         and len(_lines(tmp_path / "outbox" / "email.jsonl")) >= 1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=40)
    assert worker.returncode == 0, err
    first_line = err.strip().splitlines()[0]
    assert "nothing reaches patients" in first_line
    assert "DRIPCARE_NOW" in err and "ana@example.org" not in err and "+12125550143" not in err
    engine = _db(tmp_path)
    with Session(engine) as session:
        assert session.execute(sa.select(sa.func.count()).where(Message.status == "sending")).scalar() == 0
        welcome = session.execute(sa.select(Message).where(Message.step_id == "welcome")).scalars().all()
        assert {m.status for m in welcome} == {"sent"}
        assert session.execute(sa.select(Worker.stopped_at)).scalar() is not None
    sms = _lines(tmp_path / "outbox" / "sms.jsonl")
    assert [line["message_id"] for line in sms] == [m.id for m in welcome if m.channel == "sms"]
    assert sms[0]["to"] == "+12125550143" and "Reply STOP" in sms[0]["body"]
    email = _lines(tmp_path / "outbox" / "email.jsonl")
    assert email[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_nothing_stale_goes_out_after_a_restart(tmp_path, clinic_dir):
    env = _env(tmp_path, clinic_dir, "2027-03-01T15:00:00Z")
    _enroll(env, tmp_path)
    subprocess.run([DRIPCARE, "dispatch", "--once"], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    sent_before = len(_lines(tmp_path / "outbox" / "sms.jsonl"))
    # Back after an outage: session 1 began an hour ago.
    env["DRIPCARE_NOW"] = "2027-03-04T16:00:00Z"
    result = subprocess.run([DRIPCARE, "dispatch", "--once"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "expired" in result.stdout
    after = _lines(tmp_path / "outbox" / "sms.jsonl")
    assert len(after) == sent_before  # nothing for session 1 went out late, nothing went twice
    engine = _db(tmp_path)
    with Session(engine) as session:
        stale = session.execute(sa.select(Message.status).where(
            Message.step_id.in_(("prep-2days", "what-to-expect", "day-of")),
            Message.expires_at <= datetime(2027, 3, 4, 16, tzinfo=timezone.utc))).scalars().all()
    assert stale and set(stale) == {"expired"}


def test_worker_refuses_a_real_transport_without_credentials(tmp_path, clinic_dir):
    env = _env(tmp_path, clinic_dir, "2027-03-01T15:00:00Z", DRIPCARE_SMS_TRANSPORT="twilio")
    result = subprocess.run([DRIPCARE, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    # Every missing setting at once, one line each: no restart per variable.
    assert [line.split()[1] for line in lines] == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                                    "TWILIO_MESSAGING_SERVICE_SID", "DRIPCARE_SECRET_KEY"]
    assert not (tmp_path / "worker.db").exists()


def test_status_shows_queue_workers_and_failures(cli):
    assert cli("patient", "add", "--first-name", "Ana", "--last-name", "Diaz", "--email", "a@example.org",
               "--consent", "email").code == 0
    assert cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-09 09:30").code == 0
    result = cli("status", "--json")
    assert result.code == 0, result.err
    snap = json.loads(result.out)
    assert snap["queue"]["by_status"]["scheduled"] >= 1 and snap["workers"] == []
    assert snap["simulated_clock"] == "2027-03-01T15:00:00Z" and "simulated clock" in snap["clock"]
    assert snap["send_rates"] == {
        "sms": {"configured_per_second": 1.0, "sent_last_minute": 0, "achieved_per_second": 0},
        "email": {"configured_per_second": 5.0, "sent_last_minute": 0, "achieved_per_second": 0}}
    text = cli("status", env={"DRIPCARE_SMS_RATE": "3"}).out
    assert "workers: 0 running, 0 stopped" in text and "send rate sms: 3/s configured" in text
    result = cli("channel", "pause", "sms", "--reason", "carrier maintenance [sms] [/x]")
    assert result.code == 0
    shown = cli("status")  # staff's words and file errors are shown as written, never read as markup
    assert shown.code == 0 and "carrier maintenance [sms] [/x]" in " ".join(shown.out.split())
    assert cli("channel", "resume", "sms").code == 0
    assert "paused" not in cli("status").out
    assert "was not paused; nothing changed" in cli("channel", "resume", "sms").out
    assert cli("channel", "pause", "fax").code == 1


@pytest.mark.parametrize("command", [["status"], ["worker"], ["dispatch"], ["channel", "pause"],
                                     ["channel", "resume"], ["demo"]])
def test_operations_help_is_plain_words_with_every_option_described(cli, command):
    result = cli(*command, "--help")
    assert result.code == 0
    assert not re.search(r"<\w+>|\{\w+\}|\bTEXT\b|\bBOOLEAN\b|\bINTEGER\b", result.out), result.out
    for line in result.out.splitlines():
        option = re.search(r"(--[a-z-]+)\s*(\S*)\s*(.*)│", line)
        if option:
            assert option.group(3).strip() or option.group(2), f"{option.group(1)} is not described: {line}"


def test_a_changed_campaign_file_is_planned_with_and_a_bad_one_keeps_the_last_good(rt, clinic_dir):
    from dripcare.app import enrollments
    from dripcare.app import patients

    from dripcare.app.config_watch import ConfigWatch
    from dripcare.app.status import campaign_errors

    watch = ConfigWatch(rt, clinic_dir / "config", clinic_dir / "messages")
    patient = patients.add_patient(rt, first_name="Ana", last_name="Diaz", email="ana@example.org",
                                  consent=["email"], by="test")
    enrollments.enroll(rt, str(patient.id), "ketamine-iv", ["2027-03-20 10:00"], by="test")
    watch.record_all()
    assert watch.check() is False  # nothing changed on disk
    path = clinic_dir / "config/campaigns/ketamine-iv.toml"
    good = path.read_text()
    # The clinic drops the one-month follow-up: its pending rows are cancelled (step_removed).
    path.write_text(good[:good.index("# A month on")])
    assert watch.check() is True
    follow_up = [m for m in _rows(rt.engine) if m.step_id == "follow-up-month"]
    assert follow_up and {(m.status, m.reason) for m in follow_up} == {("cancelled", "step_removed")}
    # A broken edit: the worker keeps planning with the last good version and says why.
    path.write_text(good.replace('anchor = "each_session"', 'anchor = "every_session"', 1))
    assert watch.check() is False
    assert rt.campaigns["ketamine-iv"].step("follow-up-month") is None  # still the last good one
    with Session(rt.engine) as session:
        errors = campaign_errors(session)
    assert "every_session" in errors["campaigns/ketamine-iv.toml"]


def _rows(engine):
    with Session(engine) as session:
        return session.execute(sa.select(Message)).scalars().all()


def test_dispatch_without_once_is_a_usage_error(cli):
    result = cli("dispatch")
    assert result.code == 2 and "--once" in result.err
