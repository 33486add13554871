"""Settings (SPEC 3.1): one line naming the variable on a bad value, `.env` under the process
environment, a command checks only what it uses, no silent fallback from a real transport."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dripcare.config.clock import SimulatedClock, SystemClock
from dripcare.config.settings import Settings, SettingsError


def one_line_error(r, variable: str) -> str:
    assert r.code == 1, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert variable in lines[0]
    return lines[0]


# --- values --------------------------------------------------------------------------------------

def test_defaults():
    s = Settings(env={})
    assert s.database_url == "sqlite:///dripcare.store.db"
    assert (s.sms_transport, s.email_transport) == ("console", "console")
    assert (s.sms_rate, s.email_rate, s.dispatch_interval) == (1.0, 5.0, 15.0)
    assert (s.dispatch_batch, s.send_concurrency, s.log_format) == (200, 8, "text")
    assert str(s.config_dir) == "config" and str(s.messages_dir) == "messages"
    assert isinstance(s.clock(), SystemClock)


@pytest.mark.parametrize("url, expected", [
    ("postgres://u:p@db.example:5432/care", "postgresql+psycopg://u:p@db.example:5432/care"),
    ("postgresql://u:p@db.example/care", "postgresql+psycopg://u:p@db.example/care"),
    ("postgresql+psycopg://u@h/care", "postgresql+psycopg://u@h/care"),
    ("sqlite:////var/lib/dripcare.store.db", "sqlite:////var/lib/dripcare.store.db"),
])
def test_database_url(url, expected):
    assert Settings(env={"DATABASE_URL": url}).database_url == expected


@pytest.mark.parametrize("name, value, read", [
    ("DATABASE_URL", "mysql://u@h/db", lambda s: s.database_url),
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
        Settings(env={"TWILIO_ACCOUNT_SID": "AC123"}).twilio()
    with pytest.raises(SettingsError, match="TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER"):
        Settings(env={"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "secret"}).twilio()


def test_secret_never_in_errors():
    with pytest.raises(SettingsError) as info:
        Settings(env={"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "s3cr3t-token"}).twilio()
    assert "s3cr3t-token" not in str(info.value)


def test_smtp_without_host_names_the_variable():
    with pytest.raises(SettingsError, match="SMTP_HOST"):
        Settings(env={"DRIPCARE_EMAIL_TRANSPORT": "smtp"}).smtp()


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
    one_line_error(cli("dispatch", "--once", env={"DRIPCARE_SMS_TRANSPORT": "twilio"}), "TWILIO_ACCOUNT_SID")


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
