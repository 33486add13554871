"""Settings (SPEC 3.1): one line naming the variable on a bad value, every bad one at once,
`.env` under the process environment, a command checks only what it uses, no silent fallback
from a real transport, never a traceback and never a secret in the error."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dotenv import dotenv_values

from dripcare.config.clock import SimulatedClock, SystemClock
from dripcare.config.settings import SENDING, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
DRIPCARE = str(Path(sys.executable).parent / "dripcare")
SID = "AC0123456789abcdef0123456789abcdef"
# Every variable of SPEC 3.1.
SPEC_VARIABLES = [
    "DATABASE_URL", "DRIPCARE_CONFIG_DIR", "DRIPCARE_MESSAGES_DIR", "DRIPCARE_SMS_TRANSPORT",
    "DRIPCARE_EMAIL_TRANSPORT", "DRIPCARE_OUTBOX_DIR", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
    "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_FROM_NUMBER", "TWILIO_API_BASE_URL", "DRIPCARE_SMS_RATE",
    "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_SECURITY", "EMAIL_FROM", "EMAIL_REPLY_TO",
    "DRIPCARE_EMAIL_RATE", "DRIPCARE_PUBLIC_BASE_URL", "DRIPCARE_SECRET_KEY", "DRIPCARE_SECRET_KEY_OLD",
    "DRIPCARE_DISPATCH_INTERVAL", "DRIPCARE_DISPATCH_BATCH", "DRIPCARE_SEND_CONCURRENCY", "DRIPCARE_LOG_FORMAT",
    "DRIPCARE_NOW",
]


def one_line_error(r, variable: str) -> str:
    assert r.code == 1, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert variable in lines[0]
    return lines[0]


# --- values --------------------------------------------------------------------------------------

def test_defaults():
    s = Settings(env={})
    assert s.database_url == "sqlite:///dripcare.db"
    assert (s.sms_transport, s.email_transport) == ("console", "console")
    assert (s.sms_rate, s.email_rate, s.dispatch_interval) == (1.0, 5.0, 15.0)
    assert (s.dispatch_batch, s.send_concurrency, s.log_format) == (200, 8, "text")
    assert str(s.config_dir) == "config" and str(s.messages_dir) == "messages"
    assert isinstance(s.clock(), SystemClock)


@pytest.mark.parametrize("url, expected", [
    ("postgres://u:p@db.example:5432/care", "postgresql+psycopg://u:p@db.example:5432/care"),
    ("postgresql://u:p@db.example/care", "postgresql+psycopg://u:p@db.example/care"),
    ("postgresql+psycopg://u@h/care", "postgresql+psycopg://u@h/care"),
    ("sqlite:////var/lib/dripcare.db", "sqlite:////var/lib/dripcare.db"),
])
def test_database_url(url, expected):
    assert Settings(env={"DATABASE_URL": url}).database_url == expected


def test_the_database_shown_in_logs_has_its_password_masked():
    shown = Settings(env={"DATABASE_URL": "postgres://care:hunter2@db.example/care"}).database_shown()
    assert "hunter2" not in shown and shown == "postgresql+psycopg://care:***@db.example/care"


@pytest.mark.parametrize("name, value, read", [
    ("DATABASE_URL", "mysql://u@h/db", lambda s: s.database_url),
    ("DATABASE_URL", "sqlite:/dripcare.db", lambda s: s.database_url),          # one slash short
    ("DATABASE_URL", "sqlite://", lambda s: s.database_url),                    # no file: nothing shared
    ("DATABASE_URL", "postgresql+psycopg2://u@h/db", lambda s: s.database_url),  # a driver we do not ship
    ("DATABASE_URL", "dripcare.db", lambda s: s.database_url),
    ("DRIPCARE_SMS_RATE", "nan", lambda s: s.sms_rate),
    ("DRIPCARE_SMS_RATE", "inf", lambda s: s.sms_rate),
    ("DRIPCARE_DISPATCH_INTERVAL", "0", lambda s: s.dispatch_interval),
    ("DRIPCARE_DISPATCH_INTERVAL", "soon", lambda s: s.dispatch_interval),
    ("DRIPCARE_SEND_CONCURRENCY", "0", lambda s: s.send_concurrency),
    ("DRIPCARE_SEND_CONCURRENCY", "100000", lambda s: s.send_concurrency),
    ("EMAIL_FROM", "care at clinic", lambda s: s.email_from),
    ("EMAIL_REPLY_TO", "Clinic <nobody>", lambda s: s.email_reply_to),
    ("DRIPCARE_PUBLIC_BASE_URL", "https://care.example.org/?x=1", lambda s: s.public_base_url),
    ("DRIPCARE_SMS_RATE", "fast", lambda s: s.sms_rate),
    ("DRIPCARE_SMS_RATE", "0", lambda s: s.sms_rate),
    ("DRIPCARE_SMS_RATE", "-1", lambda s: s.sms_rate),
    ("DRIPCARE_EMAIL_RATE", "lots", lambda s: s.email_rate),
    ("DRIPCARE_DISPATCH_BATCH", "1.5", lambda s: s.dispatch_batch),
    ("DRIPCARE_SMS_TRANSPORT", "pigeon", lambda s: s.sms_transport),
    ("DRIPCARE_EMAIL_TRANSPORT", "fax", lambda s: s.email_transport),
    ("DRIPCARE_LOG_FORMAT", "xml", lambda s: s.log_format),
    ("DRIPCARE_NOW", "yesterday", lambda s: s.clock()),
    ("DRIPCARE_NOW", "2027-06-09T22:01:00", lambda s: s.clock()),       # no offset
    ("DRIPCARE_NOW", "2027-06-09T22:01:00Z x0", lambda s: s.clock()),
    ("DRIPCARE_NOW", "2027-06-09T22:01:00Z fast", lambda s: s.clock()),
    ("DRIPCARE_PUBLIC_BASE_URL", "care.example.org", lambda s: s.public_base_url),
])
def test_bad_value_names_the_variable(name, value, read):
    with pytest.raises(SettingsError) as info:
        read(Settings(env={name: value}))
    assert name in str(info.value) and "\n" not in str(info.value)


def test_simulated_clock():
    clock = Settings(env={"DRIPCARE_NOW": "2027-06-09T22:01:00Z x10"}).clock()
    assert isinstance(clock, SimulatedClock)
    assert clock.start == datetime(2027, 6, 9, 22, 1, tzinfo=timezone.utc) and clock.speed == 10
    assert clock.now() >= clock.start


def test_twilio_without_credentials_names_the_variable():
    s = Settings(env={"DRIPCARE_SMS_TRANSPORT": "twilio"})
    assert s.sms_transport == "twilio"
    with pytest.raises(SettingsError, match="TWILIO_ACCOUNT_SID"):
        s.twilio()
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        Settings(env={"TWILIO_ACCOUNT_SID": SID}).twilio()
    with pytest.raises(SettingsError, match="TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER"):
        Settings(env={"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "secret"}).twilio()


@pytest.mark.parametrize("name, value", [
    ("TWILIO_ACCOUNT_SID", "ACxyz"),
    ("TWILIO_ACCOUNT_SID", "MG0123456789abcdef0123456789abcdef"),  # a service SID in the wrong place
    ("TWILIO_ACCOUNT_SID", SID + "0"),
    ("TWILIO_MESSAGING_SERVICE_SID", "MGxyz"),
    ("TWILIO_FROM_NUMBER", "notaphone"),
    ("TWILIO_FROM_NUMBER", "7805550100"),        # no +country code: Twilio wants E.164
    ("TWILIO_FROM_NUMBER", "+1 780 555 01"),
    ("TWILIO_API_BASE_URL", "api.twilio.com"),
])
def test_each_bad_twilio_setting_is_named(name, value):
    env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "secret", "TWILIO_FROM_NUMBER": "+15005550006", name: value}
    with pytest.raises(SettingsError) as info:
        Settings(env=env).twilio()
    assert info.value.lines and all(name in line for line in info.value.lines), info.value.lines
    assert len(info.value.lines) == 1


def test_twilio_names_every_problem_at_once():
    with pytest.raises(SettingsError) as info:
        Settings(env={"TWILIO_ACCOUNT_SID": "ACxyz", "TWILIO_FROM_NUMBER": "notaphone",
                      "TWILIO_API_BASE_URL": "ftp://x"}).twilio()
    named = [line.split("=")[0].split(" ")[0] for line in info.value.lines]
    assert named == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_API_BASE_URL"]


def test_twilio_sender_is_kept_in_e164():
    twilio = Settings(env={"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "t",
                           "TWILIO_FROM_NUMBER": "+1 780 555 0100"}).twilio()
    assert twilio["from_number"] == "+17805550100" and twilio["account_sid"] == SID


def test_secret_never_in_errors():
    with pytest.raises(SettingsError) as info:
        Settings(env={"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "s3cr3t-token"}).twilio()
    assert "s3cr3t-token" not in str(info.value)
    # A token pasted into the SID's place is not echoed either.
    with pytest.raises(SettingsError) as info:
        Settings(env={"TWILIO_ACCOUNT_SID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "TWILIO_AUTH_TOKEN": "t",
                      "TWILIO_FROM_NUMBER": "+15005550006"}).twilio()
    assert "0f1e2d3c4b5a69788796a5b4c3d2e1f0" not in str(info.value) and "TWILIO_ACCOUNT_SID" in str(info.value)


def test_smtp_without_host_names_the_variable():
    with pytest.raises(SettingsError, match="SMTP_HOST"):
        Settings(env={"DRIPCARE_EMAIL_TRANSPORT": "smtp"}).smtp()


def test_smtp_names_every_problem_at_once():
    with pytest.raises(SettingsError) as info:
        Settings(env={"SMTP_PORT": "99999", "SMTP_SECURITY": "tls", "SMTP_USERNAME": "care",
                      "EMAIL_REPLY_TO": "nobody"}).smtp()
    named = [re.split(r"[ =]", line)[0] for line in info.value.lines]
    assert named == ["SMTP_HOST", "SMTP_SECURITY", "SMTP_PORT", "SMTP_PASSWORD", "EMAIL_FROM", "EMAIL_REPLY_TO"]


def test_smtp_settings_read_as_given():
    smtp = Settings(env={"SMTP_HOST": "smtp.example.org", "SMTP_SECURITY": "ssl",
                         "EMAIL_FROM": "Riverbend Clinic <care@riverbend.example>"}).smtp()
    assert (smtp["host"], smtp["port"], smtp["security"]) == ("smtp.example.org", 465, "ssl")
    assert smtp["email_from"] == "Riverbend Clinic <care@riverbend.example>"


def test_every_setting_a_sending_process_uses_is_checked_at_once():
    env = {"DATABASE_URL": "mysql://h/db", "DRIPCARE_NOW": "soon", "DRIPCARE_LOG_FORMAT": "xml",
           "DRIPCARE_SMS_RATE": "fast", "DRIPCARE_EMAIL_RATE": "0", "DRIPCARE_DISPATCH_INTERVAL": "-1",
           "DRIPCARE_DISPATCH_BATCH": "lots", "DRIPCARE_SEND_CONCURRENCY": "1.5",
           "DRIPCARE_PUBLIC_BASE_URL": "care.example.org", "DRIPCARE_SMS_TRANSPORT": "twilio",
           "TWILIO_ACCOUNT_SID": "ACxyz", "TWILIO_FROM_NUMBER": "notaphone", "DRIPCARE_EMAIL_TRANSPORT": "smtp"}
    with pytest.raises(SettingsError) as info:
        Settings(env=env).validate(*SENDING)
    lines = info.value.lines
    for name in ("DATABASE_URL", "DRIPCARE_NOW", "DRIPCARE_LOG_FORMAT", "DRIPCARE_SMS_RATE", "DRIPCARE_EMAIL_RATE",
                 "DRIPCARE_DISPATCH_INTERVAL", "DRIPCARE_DISPATCH_BATCH", "DRIPCARE_SEND_CONCURRENCY",
                 "DRIPCARE_PUBLIC_BASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER",
                 "SMTP_HOST", "EMAIL_FROM", "DRIPCARE_SECRET_KEY"):
        assert sum(1 for line in lines if line.startswith(name)) == 1, (name, lines)
    assert len(lines) == len(set(lines)) == 15


def test_a_good_sending_setup_passes():
    env = {"DRIPCARE_SMS_TRANSPORT": "twilio", "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "t",
           "TWILIO_MESSAGING_SERVICE_SID": "MG0123456789abcdef0123456789abcdef", "DRIPCARE_EMAIL_TRANSPORT": "smtp",
           "SMTP_HOST": "smtp.example.org", "EMAIL_FROM": "care@riverbend.example",
           "DRIPCARE_PUBLIC_BASE_URL": "https://care.riverbend.example", "DRIPCARE_SECRET_KEY": "k" * 32}
    Settings(env=env).validate(*SENDING)
    assert Settings(env=env).transports() == {"sms": "twilio", "email": "smtp"}


# --- .env ----------------------------------------------------------------------------------------

def test_dotenv_in_working_directory_is_read_and_environment_wins(tmp_path, monkeypatch):
    # conftest runs each test in tmp_path with no DRIPCARE_* variables set
    (tmp_path / ".env").write_text("DRIPCARE_SMS_RATE=3\nDRIPCARE_LOG_FORMAT=json\n"
                                   "DATABASE_URL=postgres://u@h/db\n")
    monkeypatch.setenv("DRIPCARE_SMS_RATE", "4")
    s = Settings()
    assert s.sms_rate == 4.0
    assert s.log_format == "json"
    assert s.database_url == "postgresql+psycopg://u@h/db"


def test_no_dotenv_is_fine(tmp_path):
    assert not (tmp_path / ".env").exists()
    assert Settings().sms_rate == 1.0


# --- through the CLI: exit 1, one line on stderr ---------------------------------------------------

def test_cli_bad_database_url(cli):
    one_line_error(cli("patient", "list", env={"DATABASE_URL": "mysql://u@localhost/care"}), "DATABASE_URL")
    one_line_error(cli("db", "upgrade", env={"DATABASE_URL": "mysql://u@localhost/care"}), "DATABASE_URL")


@pytest.mark.parametrize("value", ["yesterday", "2027-06-09 22:01", "2027-06-09T22:01:00Z x-2"])
def test_cli_bad_now(cli, value):
    one_line_error(cli("patient", "list", env={"DRIPCARE_NOW": value}), "DRIPCARE_NOW")


@pytest.mark.parametrize("value", ["fast", "0"])
def test_cli_bad_sms_rate(cli, value):
    line = one_line_error(cli("dispatch", "--once", env={"DRIPCARE_SMS_RATE": value}), "DRIPCARE_SMS_RATE")
    assert repr(value) in line


def test_cli_bad_sms_rate_does_not_stop_commands_that_do_not_send(cli):
    r = cli("patient", "list", "--json", env={"DRIPCARE_SMS_RATE": "fast"})
    assert r.code == 0 and r.out.strip() == "[]"


def test_cli_twilio_without_credentials_is_a_startup_error(cli):
    r = cli("dispatch", "--once", env={"DRIPCARE_SMS_TRANSPORT": "twilio"})
    assert r.code == 1
    _named_once_each(r.err, ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "DRIPCARE_SECRET_KEY"])


def test_cli_timeline_works_without_twilio_settings(cli):
    env = {"DRIPCARE_SMS_TRANSPORT": "twilio", "DRIPCARE_EMAIL_TRANSPORT": "smtp"}
    r = cli("patient", "add", "--first-name", "A", "--last-name", "B", "--phone", "+1 780 555 0123",
            "--consent", "sms", env=env)
    assert r.code == 0, r
    r = cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-10 09:00", env=env)
    assert r.code == 0, r
    r = cli("timeline", "1", "--json", env=env)
    assert r.code == 0 and r.err == "" and '"step"' in r.out


def test_cli_reads_dotenv_in_working_directory(cli, tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DRIPCARE_NOW=not-a-time\n")
    monkeypatch.delenv("DRIPCARE_NOW")
    one_line_error(cli("patient", "list"), "DRIPCARE_NOW")
    # the process environment wins over .env
    assert cli("patient", "list", env={"DRIPCARE_NOW": "2027-03-01T15:00:00Z"}).code == 0


def test_unsubscribe_links_are_signed_with_the_current_key_and_verified_with_the_old_too():
    assert Settings({"DRIPCARE_SECRET_KEY": "new", "DRIPCARE_SECRET_KEY_OLD": "old"}).unsubscribe_keys() == ["new", "old"]
    real = {"DRIPCARE_SMS_TRANSPORT": "twilio", "DRIPCARE_SECRET_KEY_OLD": "old"}
    with pytest.raises(SettingsError, match="DRIPCARE_SECRET_KEY is not set"):
        Settings(real).unsubscribe_keys()  # an old key alone never signs
    assert Settings({"DRIPCARE_SECRET_KEY_OLD": "old"}).unsubscribe_keys()[1:] == ["old"]


# --- every bad setting through the real commands: exit 1, one line each, nothing written -------

BAD = {"DRIPCARE_LOG_FORMAT": "xml", "DRIPCARE_SMS_RATE": "nan", "DRIPCARE_DISPATCH_INTERVAL": "0",
       "DRIPCARE_SMS_TRANSPORT": "twilio", "TWILIO_ACCOUNT_SID": "ACxyz", "TWILIO_AUTH_TOKEN": "t",
       "TWILIO_FROM_NUMBER": "notaphone", "DRIPCARE_SECRET_KEY": "k" * 32}
BAD_NAMED = ["DRIPCARE_LOG_FORMAT", "DRIPCARE_SMS_RATE", "DRIPCARE_DISPATCH_INTERVAL", "TWILIO_ACCOUNT_SID",
             "TWILIO_FROM_NUMBER"]


def _named_once_each(err: str, names: list[str]) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == len(names), err
    for name in names:
        assert sum(1 for line in lines if name in line) == 1, (name, err)
    assert all(line.startswith("error: ") for line in lines), err


@pytest.mark.parametrize("command", [("dispatch", "--once"), ("worker",)])
def test_cli_names_every_bad_setting_at_once_and_writes_nothing(cli, tmp_path, command):
    r = cli(*command, env=BAD)
    assert r.code == 1
    _named_once_each(r.err, BAD_NAMED)
    assert not (tmp_path / "cli.db").exists() and not (tmp_path / "outbox").exists()


def test_cli_status_names_its_bad_settings(cli, tmp_path):
    r = cli("status", env={"DRIPCARE_SMS_RATE": "fast", "DRIPCARE_DISPATCH_INTERVAL": "never",
                           "DRIPCARE_NOW": "tomorrow"})
    assert r.code == 1
    _named_once_each(r.err, ["DRIPCARE_SMS_RATE", "DRIPCARE_DISPATCH_INTERVAL", "DRIPCARE_NOW"])
    assert not (tmp_path / "cli.db").exists()


def test_a_worker_process_with_bad_settings_says_so_in_one_line_each(tmp_path, clinic_dir):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("DRIPCARE_", "TWILIO_"))}
    env.update(BAD, DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}", DRIPCARE_CONFIG_DIR=str(clinic_dir / "config"),
               DRIPCARE_MESSAGES_DIR=str(clinic_dir / "messages"))
    result = subprocess.run([DRIPCARE, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    _named_once_each(result.stderr, BAD_NAMED)
    assert not (tmp_path / "w.db").exists() and not (tmp_path / "w.db.worker.lock").exists()


# --- .env.example ---------------------------------------------------------------------------------

def test_env_example_lists_every_variable_commented_and_no_active_clock():
    example = ROOT / ".env.example"
    assert example.resolve() == ROOT / "src/dripcare/examples/env.example"
    lines = example.read_text().splitlines()
    for name in SPEC_VARIABLES:
        at = next((i for i, line in enumerate(lines) if re.match(rf"^#?\s*{name}=", line)), None)
        assert at is not None, f"{name} is missing from .env.example"
        assert at > 0 and lines[at - 1].startswith("#"), f"{name} has no comment above it"
    active = dotenv_values(example)
    assert "DRIPCARE_NOW" not in active  # a rehearsal clock is never switched on by copying the file
    Settings(env={k: v for k, v in active.items() if v is not None}).validate(*SENDING)
