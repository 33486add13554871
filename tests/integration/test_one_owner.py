"""Each rule has one owner (issue 9), so the two paths that reach it agree:

- a provider's answer has the same consequences whether it comes back when sending (the
  dispatcher, through the real Twilio transport against a loopback Twilio) or later in a
  signed status callback (the web process);
- a row that is both opted-out and paused gets the same reason from planning and from the
  check at the moment of sending;
- consent is written once: the same grant twice leaves one row.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from twilio.request_validator import RequestValidator

from dripcare.app import enrollments, patients
from dripcare.app.rehearsal import virtual_rates
from dripcare.app.runtime import build_dispatcher
from dripcare.config.settings import Settings
from dripcare.delivery.transports.files import FileTransport
from dripcare.delivery.transports.twilio_sms import TwilioSms
from dripcare.store import outbox
from dripcare.store.db import transaction
from dripcare.store.models import ChannelState, Consent, Enrollment, Message, Patient
from dripcare.web import create_app
from tests.support.dispatching import enroll_sample, make_dispatcher, rows
from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

PUBLIC = "https://care.example.org"
PHONE = "+12125550143"


def consequences(engine, message_id: int) -> dict:
    """Everything an answer may change: the patient's number, consent, the channel, the
    patient's other pending SMS."""
    with Session(engine) as session:
        m = session.get(Message, message_id)
        patient = session.get(Patient, m.patient_id)
        consent = session.execute(sa.select(Consent.granted, Consent.source).where(
            Consent.patient_id == patient.id, Consent.channel == "sms").order_by(Consent.id.desc())).first()
        paused = session.get(ChannelState, "sms")
        others = session.execute(sa.select(Message.status, Message.reason).where(
            Message.patient_id == patient.id, Message.channel == "sms", Message.id != m.id,
            Message.ever_claimed.is_(False))).all()
    return {"phone_invalid": patient.phone_invalid, "sms_consent": tuple(consent),
            "sms_paused": bool(paused and paused.paused), "others": sorted(set(others))}


def _twilio_dispatcher(rt, tmp_path, twilio_url: str):
    settings = Settings({"DRIPCARE_MESSAGES_DIR": str(tmp_path / "clinic/messages"), "DRIPCARE_EMAIL_TRANSPORT": "file",
                         "DRIPCARE_OUTBOX_DIR": str(tmp_path / "outbox"), "DRIPCARE_SECRET_KEY": "k",
                         "DRIPCARE_PUBLIC_BASE_URL": PUBLIC})
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM_NUMBER, api_base_url=twilio_url, public_base_url=PUBLIC)
    transports = {"sms": sms, "email": FileTransport("email", tmp_path / "outbox")}
    return build_dispatcher(rt, settings, "w", transports=transports, rates=virtual_rates(settings, rt.clock))


def _welcome_sms(engine) -> Message:
    return next(m for m in rows(engine) if m.step_id == "welcome" and m.channel == "sms")


def answered_when_sending(rt, tmp_path, fake_twilio, code: int, http: int) -> tuple[str, dict]:
    enroll_sample(rt, phone=PHONE)
    fake_twilio.fail(http, code)
    dispatcher = _twilio_dispatcher(rt, tmp_path, fake_twilio.url)
    dispatcher.run_pass()
    dispatcher.close()
    welcome = _welcome_sms(rt.engine)
    return welcome.status, consequences(rt.engine, welcome.id)


def answered_in_a_callback(rt, tmp_path, code: int) -> tuple[str, dict]:
    enroll_sample(rt, phone=PHONE)
    dispatcher = make_dispatcher(rt, tmp_path)  # accepted by the (file) provider
    dispatcher.run_pass()
    dispatcher.close()
    welcome = _welcome_sms(rt.engine)
    assert welcome.status == "sent"
    settings = Settings({"DATABASE_URL": str(rt.engine.url), "DRIPCARE_PUBLIC_BASE_URL": PUBLIC,
                         "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "DRIPCARE_SECRET_KEY": "k",
                         "DRIPCARE_CONFIG_DIR": str(tmp_path / "clinic/config"),
                         "DRIPCARE_MESSAGES_DIR": str(tmp_path / "clinic/messages")})
    client = create_app(settings, runtime=rt).test_client()
    path = f"/twilio/status?m={welcome.id}"
    form = {"MessageSid": welcome.provider_id, "MessageStatus": "failed", "ErrorCode": str(code), "To": PHONE}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, form)
    assert client.post(path, data=form, headers={"X-Twilio-Signature": signature}).status_code in (200, 204)
    return _welcome_sms(rt.engine).status, consequences(rt.engine, welcome.id)


@pytest.mark.parametrize("code, http", [(21610, 400), (21211, 400), (30006, 400), (20003, 401)])
def test_a_provider_answer_changes_the_same_things_on_either_path(rt, tmp_path, fake_twilio, code, http,
                                                                  clinic_dir, clock):
    sending_status, when_sending = answered_when_sending(rt, tmp_path, fake_twilio, code, http)
    # A second clinic database, the same patient, the same answer in a status callback.
    other = _fresh_runtime(tmp_path / "second", clinic_dir, clock)
    callback_status, in_callback = answered_in_a_callback(other, tmp_path, code)
    assert when_sending == in_callback
    if code == 20003:  # the account, not the message: the row waits for the channel to resume
        assert (sending_status, callback_status) == ("scheduled", "failed") and when_sending["sms_paused"]
    else:
        assert sending_status == callback_status == "failed"
    expected = {21610: ("sms_consent", (False, "carrier")), 21211: ("phone_invalid", True),
                30006: ("phone_invalid", True), 20003: ("sms_paused", True)}[code]
    assert when_sending[expected[0]] == expected[1]


def _fresh_runtime(folder, clinic_dir, clock):
    from dripcare.app.runtime import Runtime
    from dripcare.config.campaigns import load_campaigns
    from dripcare.config.clinic import load_clinic
    from dripcare.store.db import make_engine, upgrade

    folder.mkdir()
    engine = make_engine(f"sqlite:///{folder / 'dripcare.db'}")
    upgrade(engine)
    clinic = load_clinic(clinic_dir / "config")
    return Runtime(engine, clinic, load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages"), clock,
                   config_dir=clinic_dir / "config", messages_dir=clinic_dir / "messages")


def test_opted_out_and_paused_gets_one_reason_from_planning_and_from_sending(rt, tmp_path):
    # Planning: both changes, then a replan, close the pending rows.
    planned, _ = enroll_sample(rt, phone=PHONE, email=None)
    patients.set_consent(rt, str(planned.id), "sms", False, source="staff", by="test")
    enrollment = _only_enrollment(rt, planned.id)
    enrollments.change_enrollment(rt, str(enrollment), "pause", by="test")
    by_planning = {m.reason for m in rows(rt.engine, patient_id=planned.id) if m.status == "cancelled"}
    # Sending: a claimed row, both changes written behind the dispatcher's back (as another
    # process would, while the row waits for its slot), judged at the moment of sending.
    claimed, _ = enroll_sample(rt, phone="+12125550144", email=None)
    welcome = next(m for m in rows(rt.engine, patient_id=claimed.id) if m.step_id == "welcome")
    assert welcome.id in outbox.claim_due(rt.engine, rt.clock.now(), 100, "test-worker", ["sms"])
    with transaction(rt.engine) as session:
        from dripcare.app.consent import give

        give(session, session.get(Patient, claimed.id), "sms", False, rt.clock.now(), source="staff", by="test")
        session.execute(sa.update(Enrollment).where(Enrollment.patient_id == claimed.id).values(status="paused"))
    rt.clock.advance(outbox.LEASE + timedelta(minutes=1))  # the claiming worker is gone; its lease ran out
    dispatcher = make_dispatcher(rt, tmp_path)
    dispatcher.run_pass()  # recovers the row, claims it again and judges it at the moment of sending
    dispatcher.close()
    by_sending = next(m for m in rows(rt.engine) if m.id == welcome.id)
    assert by_planning == {by_sending.reason} == {"paused"}
    assert by_sending.status == "cancelled"


def _only_enrollment(rt, patient_id: int) -> int:
    with Session(rt.engine) as session:
        return session.execute(sa.select(Enrollment.id).where(Enrollment.patient_id == patient_id)).scalar_one()


def test_the_same_grant_twice_leaves_one_row_and_a_regrant_owes_the_footer_again(rt):
    patient = patients.add_patient(rt, first_name="Ana", last_name="Diaz", phone=PHONE, consent=["sms"], by="t")
    enrollments.enroll(rt, str(patient.id), "ketamine-iv", ["2027-03-20 10:00"], by="t")
    patients.set_consent(rt, str(patient.id), "sms", True, source="staff", by="t")  # already in force
    with Session(rt.engine) as session:
        grants = session.execute(sa.select(sa.func.count()).select_from(Consent).where(
            Consent.patient_id == patient.id)).scalar()
        footer_since = session.execute(sa.select(Enrollment.footer_since)).scalar()
    assert grants == 1
    rt.clock.advance(timedelta(hours=1))
    patients.set_consent(rt, str(patient.id), "sms", False, source="sms_keyword", by="sms")
    patients.set_consent(rt, str(patient.id), "sms", True, source="sms_keyword", by="sms")
    with Session(rt.engine) as session:
        assert session.execute(sa.select(Enrollment.footer_since)).scalar() > footer_since
