"""The worker's dispatcher with the real transports: the twilio SDK against Prism serving
Twilio's own contract and against a loopback server answering with each error class, and
smtplib against aiosmtpd. Each answer lands in the state SPEC 7 says."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlmodel import Session

from dripcare.store.consent import consent_in_force
from dripcare.app.rehearsal import fast_forward, virtual_rates
from dripcare.store.models import ChannelState, Consent, Patient
from dripcare.config.settings import Settings
from dripcare.domain.unsubscribe import read_token
from dripcare.app.runtime import build_dispatcher

from tests.support.dispatching import enroll_sample, events, rows
from tests.support.smtp import Mailbox, parse
from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, free_port

SECRET = "test-secret-key"
PUBLIC = "https://care.example.org"


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


def real_dispatcher(rt, tmp_path, twilio_url: str, smtp_port: int):
    settings = Settings({
        "DRIPCARE_SMS_TRANSPORT": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER, "TWILIO_API_BASE_URL": twilio_url,
        "DRIPCARE_EMAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port),
        "SMTP_SECURITY": "none", "EMAIL_FROM": "Riverbend Clinic <care@riverbend.example>",
        "DRIPCARE_PUBLIC_BASE_URL": PUBLIC, "DRIPCARE_SECRET_KEY": SECRET,
        "DRIPCARE_MESSAGES_DIR": str(tmp_path / "clinic/messages")})
    return build_dispatcher(rt, settings, "real-worker", rates=virtual_rates(settings, rt.clock))


@pytest.mark.contract
def test_a_course_goes_out_through_twilio_contract_and_smtp(rt, tmp_path, prism_url, mailbox):
    patient, _ = enroll_sample(rt, sessions=("2027-03-09 09:30", "2027-03-11 07:30"))
    dispatcher = real_dispatcher(rt, tmp_path, prism_url, mailbox.port)
    fast_forward(dispatcher, rt.clock)
    dispatcher.close()
    everything = rows(rt.engine)
    assert {m.status for m in everything} <= {"sent", "skipped"}
    sms = [m for m in everything if m.channel == "sms" and m.status == "sent"]
    emails = [m for m in everything if m.channel == "email" and m.status == "sent"]
    assert len(sms) >= 6 and all(m.provider_id.startswith("SM") for m in sms)  # Prism accepted each request
    assert len(mailbox.received) == len(emails) >= 6
    message = parse(mailbox.received[0])
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    link = message["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{PUBLIC}/u/") and read_token(link.rsplit("/", 1)[1], [SECRET]) == patient.id
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == f"<dripcare-{emails[0].id}@riverbend.example>" or \
        message["Message-ID"] in {f"<dripcare-{m.id}@riverbend.example>" for m in emails}


def _welcome_sms(rt, tmp_path, fake_twilio, mailbox):
    enroll_sample(rt, email=None)
    return real_dispatcher(rt, tmp_path, fake_twilio.url, mailbox.port)


def _patient(rt) -> tuple[Patient, dict]:
    with Session(rt.engine) as session:
        patient = session.execute(sa.select(Patient)).scalar()
        return patient, consent_in_force(session, patient)


def test_twilio_429_is_retried_later(rt, tmp_path, fake_twilio, mailbox):
    fake_twilio.fail(429, 20429, "Too Many Requests")
    dispatcher = _welcome_sms(rt, tmp_path, fake_twilio, mailbox)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.attempts, welcome.error) == ("scheduled", 1, "twilio:20429")
    assert welcome.next_attempt_at > rt.clock.now()


def test_twilio_21610_fails_and_revokes_sms_consent(rt, tmp_path, fake_twilio, mailbox):
    fake_twilio.fail(400, 21610, "Attempt to send to unsubscribed recipient")
    dispatcher = _welcome_sms(rt, tmp_path, fake_twilio, mailbox)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.reason) == ("failed", "twilio:21610")
    patient, consent = _patient(rt)
    assert consent["sms"] is False
    with Session(rt.engine) as session:
        assert session.execute(sa.select(Consent.source).order_by(Consent.id.desc())).scalars().first() == "carrier"
    assert {(m.status, m.reason) for m in rows(rt.engine) if m.id != welcome.id} == {("cancelled", "opted_out")}


def test_twilio_21211_fails_and_flags_the_number(rt, tmp_path, fake_twilio, mailbox):
    fake_twilio.fail(400, 21211, "Invalid 'To' Phone Number")
    dispatcher = _welcome_sms(rt, tmp_path, fake_twilio, mailbox)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.reason) == ("failed", "twilio:21211")
    assert _patient(rt)[0].phone_invalid is True
    assert {(m.status, m.reason) for m in rows(rt.engine) if m.id != welcome.id} == {("cancelled", "contact_invalid")}


def test_twilio_20003_pauses_sms_for_every_worker(rt, tmp_path, fake_twilio, mailbox):
    fake_twilio.fail(401, 20003, "Authenticate")
    dispatcher = _welcome_sms(rt, tmp_path, fake_twilio, mailbox)
    dispatcher.run_pass()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.attempts) == ("scheduled", 0)
    with Session(rt.engine) as session:
        state = session.get(ChannelState, "sms")
        assert state.paused and state.until == rt.clock.now() + timedelta(minutes=10)
    requests = len(fake_twilio.created)
    dispatcher.run_pass()
    dispatcher.close()
    assert len(fake_twilio.created) == requests  # paused: nothing more is tried


def test_twilio_500_is_unconfirmed_then_found_by_lookup(rt, tmp_path, fake_twilio, mailbox):
    fake_twilio.fail(500, None)
    dispatcher = _welcome_sms(rt, tmp_path, fake_twilio, mailbox)
    dispatcher.run_pass()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert welcome.status == "unconfirmed"
    fake_twilio.answer = None
    fake_twilio.store("SM" + "f" * 32, welcome.to_contact, welcome.body, rt.clock.now())
    rt.clock.advance(timedelta(minutes=3))
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.provider_id) == ("sent", "SM" + "f" * 32)
    assert len(fake_twilio.created) == 1  # never sent blindly a second time


def test_twilio_read_timeout_not_found_is_sent_again_after_the_grace(rt, tmp_path, fake_twilio, mailbox):
    fake_twilio.fail(500, None)
    dispatcher = _welcome_sms(rt, tmp_path, fake_twilio, mailbox)
    dispatcher.run_pass()
    fake_twilio.answer = None
    rt.clock.advance(timedelta(minutes=3))
    dispatcher.run_pass()
    assert rows(rt.engine, step_id="welcome")[0].status == "unconfirmed"
    rt.clock.advance(timedelta(minutes=8))
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert welcome.status == "sent" and len(fake_twilio.created) == 2
    assert "recovered" in events(rt.engine, welcome.id)


def test_smtp_450_is_retried_and_550_fails_and_flags_the_address(rt, tmp_path, fake_twilio, mailbox):
    enroll_sample(rt, phone=None)
    mailbox.rcpt_reply = "450 4.2.1 Mailbox busy"
    dispatcher = real_dispatcher(rt, tmp_path, fake_twilio.url, mailbox.port)
    dispatcher.run_pass()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.attempts) == ("scheduled", 1)
    mailbox.rcpt_reply = "550 5.1.1 No such user"
    rt.clock.set(welcome.next_attempt_at)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = rows(rt.engine, step_id="welcome")[0]
    assert (welcome.status, welcome.reason) == ("failed", "smtp:550")
    assert _patient(rt)[0].email_invalid is True
