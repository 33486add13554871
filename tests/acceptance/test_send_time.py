"""The check at the moment of sending, under the conditions it must survive: a real worker
process at a real rate (1 SMS a second) through a loopback Twilio that answers in 0.3 s,
with changes landing while the claimed batch waits for its send slots (SPEC 7).

What reached the provider is measured at the provider, never read from our own records."""

from __future__ import annotations

import re
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa
from sqlmodel import Session
from twilio.request_validator import RequestValidator

from dripcare.app import enrollments, patients
from dripcare.app.runtime import open_runtime
from dripcare.config.clock import VirtualClock
from dripcare.config.settings import Settings
from dripcare.store.db import make_engine
from dripcare.store.models import Message, Worker
from tests.support.fleet import ListingTwilio, answers, environment, run, start, twilio_settings, wait_for
from tests.support.twilio_fakes import AUTH_TOKEN, free_port

NEW_YORK = ZoneInfo("America/New_York")
NOTICE = """id = "notice"
name = "One text now"
channels = ["sms"]

[[steps]]
id = "hello"
anchor = "enrollment"
offset = "0m"
expires = "24h"
"""


def phone(n: int) -> str:
    return f"+1212555{n:04d}"


def clinic_with_notice(clinic_dir: Path, quiet: tuple[str, str] = ("21:00", "08:00")) -> None:
    """The example clinic plus a one-step campaign, with quiet hours as the test says."""
    (clinic_dir / "config/campaigns/notice.toml").write_text(NOTICE)
    (clinic_dir / "messages/notice").mkdir()
    (clinic_dir / "messages/notice/hello.sms.j2").write_text("Hi {{ patient.name }}, a note from the clinic.\n")
    clinic = clinic_dir / "config/clinic.toml"
    text = re.sub(r"(?m)^quiet_hours = .*$", f'quiet_hours = {{ start = "{quiet[0]}", end = "{quiet[1]}" }}',
                  clinic.read_text())
    clinic.write_text(text)


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def sending_env(database: Path, clinic_dir: Path, now: datetime, tmp_path: Path, twilio, **more: str) -> dict:
    """A worker on DRIPCARE_NOW at 1 SMS a second through the loopback Twilio."""
    settings = {**twilio_settings(twilio), "DRIPCARE_NOW": iso(now), "DRIPCARE_SMS_RATE": "1",
                "DRIPCARE_OUTBOX_DIR": str(tmp_path / "outbox"), **more}
    return environment(f"sqlite:///{database}", clinic_dir, **settings)


def file_env(database: Path, clinic_dir: Path, now_spec: str, tmp_path: Path) -> dict:
    """A quick worker (passes every 0.3 s) on the file transports."""
    return environment(f"sqlite:///{database}", clinic_dir, DRIPCARE_NOW=now_spec, DRIPCARE_SMS_TRANSPORT="file",
                       DRIPCARE_EMAIL_TRANSPORT="file", DRIPCARE_OUTBOX_DIR=str(tmp_path / "outbox"),
                       DRIPCARE_DISPATCH_INTERVAL="0.3")


def enroll_many(env: dict[str, str], now: datetime, count: int) -> None:
    """`count` patients in New York, SMS consent, each with one text due at `now`."""
    rt = open_runtime(Settings(env), clock=VirtualClock(now))
    for n in range(1, count + 1):
        patient = patients.add_patient(rt, first_name=f"Pat{n}", last_name="Test", phone=phone(n),
                                       timezone="America/New_York", consent=["sms"], by="test")
        enrollments.enroll(rt, str(patient.id), "notice", [], by="test")
    rt.engine.dispose()


def rows(database: Path) -> list[Message]:
    engine = make_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        found = session.execute(sa.select(Message).order_by(Message.id)).scalars().all()
    engine.dispose()
    return found


def settled(database: Path) -> bool:
    return all(m.status not in ("sending",) for m in rows(database)) and any(m.status == "sent" for m in rows(database))


def stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=40)
    return err


def test_changes_landing_while_a_claimed_batch_waits_are_seen_at_the_moment_of_sending(tmp_path, clinic_dir):
    now = datetime(2027, 3, 2, 15, 0, tzinfo=timezone.utc)  # 10:00 in New York
    clinic_with_notice(clinic_dir)
    database = tmp_path / "dripcare.db"
    web_port = free_port()
    public = f"http://127.0.0.1:{web_port}"
    with ListingTwilio() as twilio:
        twilio.delay = 0.3
        env = sending_env(database, clinic_dir, now, tmp_path, twilio, DRIPCARE_DISPATCH_INTERVAL="20",
                          DRIPCARE_PUBLIC_BASE_URL=public)
        enroll_many(env, now, 20)  # one claim of 20 at 1/s: the last waits about 20 s for its slot
        web = start(env, tmp_path, "web", "--host", "127.0.0.1", "--port", str(web_port))
        worker = start(env, tmp_path, "worker")
        try:
            assert wait_for(lambda: answers(f"{public}/healthz"), 30), "web process did not start"
            assert wait_for(lambda: len(twilio.arrivals) >= 1, 30), "nothing reached the provider"
            with_rows = {m.patient_id: m for m in rows(database)}
            assert sum(m.status == "sending" for m in with_rows.values()) >= 15  # the batch is claimed, waiting
            changed = _change_patients_16_to_20(env, tmp_path, public)
            assert wait_for(lambda: settled(database), 60)
        finally:
            worker_log = stop(worker)
            stop(web)
        for patient_id, done_at in changed.items():
            old_number = phone(patient_id)
            assert not [at for at in twilio.to(old_number) if at > done_at], f"patient {patient_id} texted after"
        assert not twilio.to("+12125550999")  # the new number has no consent yet
        assert [len(twilio.to(phone(n))) for n in range(1, 16)] == [1] * 15  # everyone else, exactly once
    final = {m.patient_id: (m.status, m.reason) for m in rows(database)}
    assert [final[n] for n in range(16, 21)] == [("cancelled", "opted_out"), ("cancelled", "opted_out"),
                                                 ("cancelled", "withdrawn"), ("cancelled", "paused"),
                                                 ("cancelled", "opted_out")]
    assert "+12125550016" not in worker_log  # contacts masked in the log


def _change_patients_16_to_20(env, cwd, public) -> dict[int, datetime]:
    """A STOP through the web process and four staff changes, side by side; when each landed."""
    done: dict[int, datetime] = {}
    stop_form = {"From": phone(16), "To": "+17805550100", "Body": "STOP", "MessageSid": "SMstop16"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{public}/twilio/inbound", stop_form)
    answer = requests.post(f"{public}/twilio/inbound", data=stop_form, headers={"X-Twilio-Signature": signature},
                           timeout=10)
    assert answer.status_code == 200
    done[16] = datetime.now(timezone.utc)
    commands = {17: ["consent", "revoke", "17", "--channel", "sms"], 18: ["enrollment", "withdraw", "18"],
                19: ["enrollment", "pause", "19"], 20: ["patient", "update", "20", "--phone", "+1 212 555 0999"]}
    running = {n: start(env, cwd, *args) for n, args in commands.items()}
    for n, process in running.items():
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        done[n] = datetime.now(timezone.utc)
    return done


def test_a_backlog_at_the_edge_of_quiet_hours_stops_reaching_the_provider_at_their_start(tmp_path, clinic_dir):
    now = datetime(2027, 3, 3, 1, 59, 40, tzinfo=timezone.utc)  # 20:59:40 in New York
    clinic_with_notice(clinic_dir, quiet=("21:00", "08:00"))
    database = tmp_path / "dripcare.db"
    with ListingTwilio() as twilio:
        twilio.delay = 0.3
        env = sending_env(database, clinic_dir, now, tmp_path, twilio, DRIPCARE_DISPATCH_INTERVAL="15")
        enroll_many(env, now, 40)  # at 1/s, about 18 go before 21:00 and the rest wait for the morning
        worker = start(env, tmp_path, "worker")
        try:
            assert wait_for(lambda: _past_quiet_start(database, now), 90)
            assert wait_for(lambda: all(m.status in ("sent", "scheduled", "expired") for m in rows(database)), 60)
        finally:
            stop(worker)
        simulated = _simulated_clock(database)
        reached = sorted(simulated(wall).astimezone(NEW_YORK) for _, wall, _ in twilio.arrivals)
    assert reached, "nothing went out before quiet hours"
    assert reached[-1].time() < datetime(2027, 3, 2, 21, 0).time()  # measured at the provider
    assert len(reached) >= 10  # the backlog really was sending when the hour struck
    held = [m for m in rows(database) if m.status != "sent"]
    assert len(held) + len(reached) == 40 and held
    for m in held:
        resumes = (m.next_attempt_at or m.due_at).astimezone(NEW_YORK)
        assert (m.status, m.reason) == ("scheduled", "quiet_hours") and resumes.strftime("%H:%M") == "08:00"


def _past_quiet_start(database: Path, start: datetime) -> bool:
    simulated = _simulated_clock(database)
    return simulated is not None and simulated(datetime.now(timezone.utc)) > start + timedelta(seconds=25)


def _simulated_clock(database: Path):
    """Wall clock -> the worker's simulated clock, from its own heartbeat (both stamped at once)."""
    engine = make_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        beat = session.execute(sa.select(Worker).order_by(Worker.heartbeat_at.desc())).scalars().first()
    engine.dispose()
    if beat is None or beat.simulated_at is None:
        return None
    offset = beat.simulated_at - beat.heartbeat_at
    return lambda wall: wall + offset


@pytest.mark.parametrize("how", ["removed", "renamed"])
def test_a_campaign_file_gone_under_a_running_worker_cancels_nothing(tmp_path, clinic_dir, how):
    env = file_env(tmp_path / "dripcare.db", clinic_dir, "2027-03-01T15:00:00Z", tmp_path)
    for args in (["patient", "add", "--first-name", "Ana", "--last-name", "Diaz", "--phone", "+12125550143",
                  "--timezone", "America/New_York", "--consent", "sms"],
                 ["enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-20 10:00",
                  "--session", "2027-03-22 10:00"]):
        assert run(env, tmp_path, *args).returncode == 0
    pending = {m.id for m in rows(tmp_path / "dripcare.db") if m.status == "scheduled"}
    campaign = clinic_dir / "config/campaigns/ketamine-iv.toml"
    worker = start(env, tmp_path, "worker")
    try:
        assert wait_for(lambda: any(m.status == "sent" for m in rows(tmp_path / "dripcare.db")), 30)
        kept = campaign.read_bytes()
        if how == "removed":
            campaign.unlink()
        else:
            campaign.rename(campaign.with_suffix(".toml.off"))
        assert wait_for(lambda: "ketamine-iv.toml" in run(env, tmp_path, "status").stdout, 30)
        # Staff keep working meanwhile; planning leaves the campaign's rows alone.
        added = run(env, tmp_path, "session", "add", "1", "--at", "2027-03-24 10:00", "--campaign", "ketamine-iv")
        assert added.returncode == 0, added.stderr
        assert "campaign file for ketamine-iv is missing" in " ".join(added.stdout.split())
        assert not [m for m in rows(tmp_path / "dripcare.db") if m.status == "cancelled"]
        campaign.write_bytes(kept)
        campaign.with_suffix(".toml.off").unlink(missing_ok=True)
        assert wait_for(lambda: "ketamine-iv.toml" not in run(env, tmp_path, "status").stdout, 30)
    finally:
        stop(worker)
    after = {m.id: m.status for m in rows(tmp_path / "dripcare.db")}
    assert all(after[i] in ("scheduled", "sent", "sending") for i in pending - {min(pending)})
    assert "cancelled" not in after.values()


def test_a_changed_clinic_file_is_taken_by_a_running_worker_and_a_broken_one_is_refused(tmp_path, clinic_dir):
    now = datetime(2027, 3, 2, 1, 0, tzinfo=timezone.utc)  # 20:00 in New York
    clinic_with_notice(clinic_dir, quiet=("22:00", "08:00"))
    (clinic_dir / "config/campaigns/notice.toml").write_text(NOTICE.replace('offset = "0m"', 'offset = "+30m"'))
    database = tmp_path / "dripcare.db"
    env = file_env(database, clinic_dir, iso(now) + " x120", tmp_path)
    enroll_many(env, now, 1)  # its text is due at 20:30, a quarter of a minute of the worker's time away
    clinic = clinic_dir / "config/clinic.toml"
    worker = start(env, tmp_path, "worker")
    try:
        assert wait_for(lambda: run(env, tmp_path, "status").returncode == 0 and _has_heartbeat(database), 30)
        clinic.write_text(clinic.read_text().replace('start = "22:00"', 'start = "20:15"'))
        assert wait_for(lambda: _resumes_at(database) == "08:00", 20), "the new quiet hours were not taken"
        clinic.write_text(clinic.read_text() + "\n[sending\n")  # a broken edit
        assert wait_for(lambda: "clinic.toml" in run(env, tmp_path, "status").stdout, 20)
        assert wait_for(lambda: _simulated_clock(database)(datetime.now(timezone.utc)) > now + timedelta(minutes=32),
                        45)  # past 20:30, when the text was due
    finally:
        stop(worker)
    assert not (tmp_path / "outbox" / "sms.jsonl").exists()  # 20:30 fell inside the new quiet hours
    assert _resumes_at(database) == "08:00"  # the last good quiet hours still rule


def _has_heartbeat(database: Path) -> bool:
    return _simulated_clock(database) is not None


def _resumes_at(database: Path) -> str | None:
    m = rows(database)[0]
    if m.status != "scheduled":
        return m.status
    return (m.next_attempt_at or m.due_at).astimezone(NEW_YORK).strftime("%H:%M")
