"""The development transports (console, file), the shared helpers, and build_transports."""

import io
import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from dripcare.config.settings import Settings, SettingsError
from dripcare.delivery.transports import build_transports
from dripcare.delivery.transports.base import Outgoing, Transport, TransportError, email_headers, mask_contact
from dripcare.delivery.transports.console import ConsoleTransport
from dripcare.delivery.transports.files import FileTransport
from dripcare.delivery.transports.smtp_email import SmtpEmail
from dripcare.delivery.transports.twilio_sms import TwilioSms

NOW = datetime(2027, 6, 9, 16, 0, tzinfo=timezone.utc)
PHONE, EMAIL = "+15555550123", "sam.rivers@example.org"
SMS_BODY = "Riverbend Clinic: your visit is tomorrow at 10:00 [bring a snack]."


def sms(message_id=1, body=SMS_BODY):
    return Outgoing(message_id=message_id, channel="sms", to=PHONE, body=body,
                    expires_at=NOW + timedelta(hours=1), now=NOW)


def email(message_id=2, unsubscribe_url="https://care.riverbend.example/u/9.abc"):
    return Outgoing(message_id=message_id, channel="email", to=EMAIL, body="Plain part", subject="Before Friday",
                    html="<p>HTML part</p>", expires_at=NOW + timedelta(hours=1), now=NOW,
                    unsubscribe_url=unsubscribe_url)


def test_console_prints_a_readable_block_and_logs_only_masked(caplog):
    caplog.set_level(logging.DEBUG, logger="dripcare")
    screen = Console(file=io.StringIO(), width=100, record=True)
    transport = ConsoleTransport("sms", screen)
    assert transport.send(sms(message_id=31)) == "console-31"
    shown = screen.export_text()
    assert "SMS #31" in shown and PHONE in shown and "[bring a snack]" in shown
    assert PHONE not in caplog.text and SMS_BODY not in caplog.text and "+1******0123" in caplog.text


def test_console_shows_an_emails_subject():
    screen = Console(file=io.StringIO(), width=100, record=True)
    assert ConsoleTransport("email", screen).send(email(message_id=32)) == "console-32"
    shown = screen.export_text()
    assert "Before Friday" in shown and EMAIL in shown and "Plain part" in shown


def test_file_transport_appends_one_json_object_per_line(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="dripcare")
    outbox = tmp_path / "outbox"  # created on first send
    assert FileTransport("sms", outbox).send(sms(message_id=5)) == "file-5"
    FileTransport("sms", outbox).send(sms(message_id=6, body="Second"))
    lines = (outbox / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"message_id": 5, "channel": "sms", "to": PHONE, "body": SMS_BODY, "sent_at": "2027-06-09T16:00:00+00:00"},
        {"message_id": 6, "channel": "sms", "to": PHONE, "body": "Second", "sent_at": "2027-06-09T16:00:00+00:00"},
    ]
    assert PHONE not in caplog.text and SMS_BODY not in caplog.text


def test_file_transport_writes_email_with_its_headers(tmp_path):
    transport = FileTransport("email", tmp_path, email_from="Riverbend <care@riverbend.example>",
                              reply_to="desk@riverbend.example")
    assert transport.send(email(message_id=8)) == "file-8"
    record = json.loads((tmp_path / "email.jsonl").read_text(encoding="utf-8"))
    assert record["subject"] == "Before Friday" and record["html"] == "<p>HTML part</p>"
    assert record["body"] == "Plain part" and record["to"] == EMAIL
    assert record["headers"] == {
        "From": "Riverbend <care@riverbend.example>", "To": EMAIL, "Reply-To": "desk@riverbend.example",
        "Subject": "Before Friday", "Date": "Wed, 09 Jun 2027 16:00:00 +0000",
        "Message-ID": "<dripcare-8@riverbend.example>",
        "List-Unsubscribe": "<https://care.riverbend.example/u/9.abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_file_transport_lines_stay_whole_under_threads(tmp_path):
    transport = FileTransport("sms", tmp_path)
    body = "x" * 5000  # long enough that an unlocked write could interleave
    threads = [threading.Thread(target=lambda n=n: [transport.send(sms(message_id=n * 100 + i, body=body))
                                                    for i in range(25)]) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert sorted(r["message_id"] for r in records) == sorted(n * 100 + i for n in range(8) for i in range(25))


def test_file_transport_that_cannot_write_is_retryable(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(TransportError) as caught:
        FileTransport("sms", blocker).send(sms())
    assert caught.value.kind == "retryable"


def test_email_headers_without_unsubscribe_or_reply_to():
    headers = email_headers(email(unsubscribe_url=None), "care@riverbend.example", None)
    assert "List-Unsubscribe" not in headers and "Reply-To" not in headers
    assert headers["Message-ID"] == "<dripcare-2@riverbend.example>"


def test_email_headers_fold_a_subject_written_over_lines():
    message = Outgoing(message_id=4, channel="email", to=EMAIL, body="b", subject="Before\n  Friday\n",
                       expires_at=NOW, now=NOW)
    assert email_headers(message, "care@riverbend.example", None)["Subject"] == "Before Friday"


@pytest.mark.parametrize("value, masked", [
    ("+15555550123", "+1******0123"), ("+447700900123", "+4*******0123"),
    ("sam.rivers@example.org", "s***@example.org"), ("s@example.org", "s***@example.org"), ("12345", "***45"),
])
def test_mask_contact(value, masked):
    assert mask_contact(value) == masked


def test_transport_error_refuses_an_unknown_kind():
    with pytest.raises(ValueError):
        TransportError("maybe", "x")
    error = TransportError("permanent", "twilio:21211", "invalid 'To' number")
    assert (error.kind, error.code, error.detail) == ("permanent", "twilio:21211", "invalid 'To' number")


def test_build_transports_defaults_to_console():
    screen = Console(file=io.StringIO())
    transports = build_transports(Settings({}), console=screen)
    assert set(transports) == {"sms", "email"}
    for channel, transport in transports.items():
        assert isinstance(transport, ConsoleTransport) and transport.development
        assert transport.channel == channel and transport.console is screen
        assert isinstance(transport, Transport)


def test_build_transports_file(tmp_path):
    transports = build_transports(Settings({"DRIPCARE_SMS_TRANSPORT": "file", "DRIPCARE_EMAIL_TRANSPORT": "file",
                                            "DRIPCARE_OUTBOX_DIR": str(tmp_path), "EMAIL_FROM": "care@clinic.example"}))
    assert transports["sms"].path == tmp_path / "sms.jsonl"
    assert transports["email"].path == tmp_path / "email.jsonl"
    assert transports["email"].email_from == "care@clinic.example"
    assert FileTransport("email", tmp_path).email_from == "dripcare@localhost"


REAL = {
    "DRIPCARE_SMS_TRANSPORT": "twilio", "DRIPCARE_EMAIL_TRANSPORT": "smtp",
    "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef", "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM_NUMBER": "+15005550006", "SMTP_HOST": "smtp.example.org", "EMAIL_FROM": "care@clinic.example",
    "DRIPCARE_SECRET_KEY": "k" * 32, "DRIPCARE_PUBLIC_BASE_URL": "https://care.clinic.example",
}


def test_build_transports_real():
    transports = build_transports(Settings(REAL))
    assert isinstance(transports["sms"], TwilioSms) and not transports["sms"].development
    assert isinstance(transports["email"], SmtpEmail) and transports["email"].port == 587
    assert transports["sms"].public_base_url == "https://care.clinic.example"


@pytest.mark.parametrize("missing", ["TWILIO_AUTH_TOKEN", "SMTP_HOST", "DRIPCARE_SECRET_KEY",
                                     "DRIPCARE_PUBLIC_BASE_URL", "EMAIL_FROM"])
def test_real_transport_without_its_setting_is_a_start_up_error(missing):
    env = {k: v for k, v in REAL.items() if k != missing}
    with pytest.raises(SettingsError) as caught:
        build_transports(Settings(env))
    assert missing in str(caught.value) and "\n" not in str(caught.value)
