"""The web process over real HTTP: the Flask app served by werkzeug (and the Procfile's
gunicorn) on a loopback port, Twilio requests signed with the SDK's RequestValidator for
the public URL, patients set up through the service on the same SQLite file."""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from sqlmodel import Session
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from dripcare.store import outbox
from dripcare.app import enrollments, patients
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.store.db import make_engine, transaction
from dripcare.store.models import ChannelState, Consent, Enrollment, InboundMessage, Message, MessageEvent, Patient, Worker
from dripcare.app.runtime import Runtime
from dripcare.config.settings import Settings, SettingsError
from dripcare.domain.unsubscribe import make_token
from dripcare.web import create_app

from tests.conftest import START
from tests.support.fleet import Web, environment, wait_for

PUBLIC = "https://care.example.org"
TWILIO_TOKEN = "test-auth-token"
SECRET, OLD_SECRET = "current-secret-key", "previous-secret-key"
PHONE = "+12125550143"


def web_settings(database_url: str, clinic_dir: Path, **extra: str) -> Settings:
    return Settings({"DATABASE_URL": database_url, "DRIPCARE_CONFIG_DIR": str(clinic_dir / "config"),
                     "DRIPCARE_MESSAGES_DIR": str(clinic_dir / "messages"), "DRIPCARE_NOW": "2027-03-01T15:00:00Z",
                     "DRIPCARE_PUBLIC_BASE_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                     "DRIPCARE_SECRET_KEY": SECRET, "DRIPCARE_SECRET_KEY_OLD": OLD_SECRET, **extra})


class Site:
    """The app on a loopback port; Twilio's requests signed for the public URL."""

    def __init__(self, url: str):
        self.url = url

    def twilio(self, path: str, params: dict, *, signed_for: str | None = None, signature: str | None = None,
               unsigned: bool = False) -> requests.Response:
        signed = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + (signed_for or path), params)
        headers = {} if unsigned else {"X-Twilio-Signature": signature or signed}
        return requests.post(self.url + path, data=params, headers=headers, allow_redirects=False, timeout=10)

    def text(self, body: str, sender: str = PHONE, sid: str | None = None) -> requests.Response:
        self._n = getattr(self, "_n", 0) + 1
        return self.twilio("/twilio/inbound", {"From": sender, "To": "+17805550100", "Body": body,
                                               "MessageSid": sid or f"SMin{self._n:030d}"})

    def callback(self, status_: str, *, m: int | None = None, sid: str = "SMout1", code: str | None = None):
        params = {"MessageSid": sid, "MessageStatus": status_, "To": PHONE, "From": "+17805550100"}
        if code:
            params["ErrorCode"] = code
        return self.twilio("/twilio/status" + (f"?m={m}" if m is not None else ""), params)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, allow_redirects=False, timeout=10)

    def post(self, path: str, data=None) -> requests.Response:
        return requests.post(self.url + path, data=data, allow_redirects=False, timeout=10)


@contextmanager
def serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def site(engine, clinic_dir, rt):
    with serving(create_app(web_settings(str(engine.url), clinic_dir))) as running:
        yield running


# --- set-up and reading back, through our own code and the real database ---------------

def enrolled(rt, phone=PHONE, email="ana@example.org", first_name="Ana", consent=("sms", "email")) -> Patient:
    patient = patients.add_patient(rt, first_name=first_name, last_name="Diaz", phone=phone, email=email,
                                  consent=list(consent), by="test")
    enrollments.enroll(rt, str(patient.id), "ketamine-iv", ["2027-03-10 10:00", "2027-03-12 10:00"], by="test")
    return patient


def messages(engine, patient_id: int, channel: str | None = None) -> list[Message]:
    with Session(engine) as session:
        query = sa.select(Message).where(Message.patient_id == patient_id).order_by(Message.id)
        if channel:
            query = query.where(Message.channel == channel)
        return session.execute(query).scalars().all()


def consents(engine, patient_id: int, channel: str = "sms") -> list[Consent]:
    with Session(engine) as session:
        return session.execute(sa.select(Consent).where(Consent.patient_id == patient_id, Consent.channel == channel)
                               .order_by(Consent.id)).scalars().all()


def inbound_rows(engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return session.execute(sa.select(InboundMessage).order_by(InboundMessage.id)).scalars().all()


def get(engine, model, key):
    with Session(engine) as session:
        return session.get(model, key)


def snapshot(engine) -> dict:
    """Everything a refused request must leave alone."""
    with Session(engine) as session:
        def count(model):
            return session.execute(sa.select(sa.func.count()).select_from(model)).scalar()
        return {"consent": count(Consent), "inbound": count(InboundMessage), "events": count(MessageEvent),
                "channel_state": count(ChannelState),
                "messages": session.execute(sa.select(Message.id, Message.status, Message.reason, Message.provider_id)
                                            .order_by(Message.id)).all(),
                "patients": session.execute(sa.select(Patient.id, Patient.phone_invalid, Patient.email_invalid)).all()}


def pending(rows: list[Message]) -> list[Message]:
    return [m for m in rows if m.status == "scheduled"]


def mark(engine, message_id: int, to: str = "sent", provider_id: str | None = "SMout1", contact=PHONE) -> None:
    """The dispatcher's part (claim, attempt, answer) in one step of the outbox's own move."""
    with transaction(engine) as session:
        assert outbox._move(session, message_id, ("scheduled",), to, START, to, provider_id=provider_id,
                                 sent_at=START if to == "sent" else None, attempted_at=START, ever_claimed=True,
                                 attempts=1, to_contact=contact)


def first_sms(engine, patient_id: int) -> Message:
    return pending(messages(engine, patient_id, "sms"))[0]


def clinic_text(rt, key: str, locale: str = "en") -> str:
    """What the clinic's clinic.toml says for `key` in that locale, rendered as the web renders it."""
    return rt.templates.render_text(rt.clinic.sms_text(key, locale), {})


def twiml_texts(response: requests.Response) -> list[str]:
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/xml")
    return [html.unescape(t) for t in re.findall(r"<Message>(.*?)</Message>", response.text, re.S)]


def twiml_text(response: requests.Response) -> str:
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/xml")
    found = twiml_texts(response)
    return found[0] if found else ""


# --- inbound: opt-out, opt-in, help ---------------------------------------------------

# The reply tables (every opt-out, crisis and ordinary phrasing) run through signed HTTP in
# test_web_replies.py; these are the consequences of each kind of reply.

def test_a_sentence_with_stop_in_it_is_not_an_opt_out(rt, engine, site):
    patient = enrolled(rt)
    before = snapshot(engine)
    reply = twiml_text(site.text("Please don't stop the reminders, they help"))
    assert "not monitored" in reply and "988" in reply
    assert consents(engine, patient.id)[-1].granted
    assert snapshot(engine)["messages"] == before["messages"]
    assert inbound_rows(engine)[-1].taken_as == "reply"


def test_start_after_stop_plans_the_sms_again_and_owes_the_footer(rt, engine, site, clock):
    patient = enrolled(rt)
    scheduled = {m.id for m in pending(messages(engine, patient.id, "sms"))}
    twiml_text(site.text("STOP"))
    assert not pending(messages(engine, patient.id, "sms"))
    assert pending(messages(engine, patient.id, "email"))  # email consent untouched
    reply = twiml_text(site.text("start"))
    assert reply == clinic_text(rt, "opt_in_reply")
    assert {m.id for m in pending(messages(engine, patient.id, "sms"))} == scheduled  # the same rows reopened
    history = consents(engine, patient.id)
    assert [(c.granted, c.source) for c in history] == [(True, "staff"), (False, "sms_keyword"), (True, "sms_keyword")]
    with Session(engine) as session:
        enrollment = session.execute(sa.select(Enrollment).where(Enrollment.patient_id == patient.id)).scalar_one()
    assert enrollment.footer_since > START  # the next SMS carries "Reply STOP..." again


def test_help_reply_names_the_clinic_its_phone_and_how_to_stop(rt, engine, site):
    patient = enrolled(rt)
    before = snapshot(engine)
    reply = twiml_text(site.text("help"))
    assert "Riverbend Clinic" in reply and "+1 780 555 0100" in reply and "Reply STOP" in reply
    assert twiml_text(site.text("Info?")) == reply
    after = snapshot(engine)
    assert (after["consent"], after["messages"]) == (before["consent"], before["messages"])
    assert [r.taken_as for r in inbound_rows(engine)] == ["help", "help"]
    assert consents(engine, patient.id)[-1].granted


def test_keyword_replies_off_records_but_stays_silent(rt, engine, clinic_dir):
    toml = clinic_dir / "config" / "clinic.toml"
    toml.write_text(toml.read_text().replace("keyword_replies = true", "keyword_replies = false"))
    rt.clinic = load_clinic(clinic_dir / "config")
    patient = enrolled(rt)
    with serving(create_app(web_settings(str(engine.url), clinic_dir))) as running:
        assert twiml_text(running.text("STOP")) == ""
        assert twiml_text(running.text("HELP")) == ""
        assert "not monitored" in twiml_text(running.text("When is my next visit?"))
    assert not consents(engine, patient.id)[-1].granted
    assert [r.taken_as for r in inbound_rows(engine)] == ["opt_out", "help", "reply"]


# --- inbound: crisis, questions, unknown and shared numbers ---------------------------

def test_crisis_gets_the_crisis_reply_at_once_and_is_urgent(rt, engine, site, caplog):
    caplog.set_level(logging.INFO)
    patient = enrolled(rt)
    for text in ("I want to die", "ya no puedo, quiero morir", "HELP I am not safe"):
        reply = twiml_text(site.text(text))
        assert reply.startswith("If you are in danger now, call 911.") and "988" in reply[:160], reply
        assert "not monitored" not in reply
    rows = inbound_rows(engine)
    assert [(r.taken_as, r.urgent, r.patient_id) for r in rows] == [("crisis", True, patient.id)] * 3
    assert consents(engine, patient.id)[-1].granted  # nothing else changed
    logged = [r.getMessage() for r in caplog.records]
    assert f"urgent reply waiting in dripcare inbox: id {rows[0].id}" in logged
    assert not [line for line in logged if PHONE in line or "die" in line or "morir" in line]


def test_an_unknown_number_is_stored_without_a_patient(rt, engine, site):
    enrolled(rt)
    reply = twiml_text(site.text("who is this?", sender="+14155550199"))
    assert "not monitored" in reply
    rows = inbound_rows(engine)
    assert [(r.patient_id, r.from_number, r.taken_as) for r in rows] == [(None, "+14155550199", "reply")]
    twiml_text(site.text("STOP", sender="+14155550199"))  # nobody to opt out; still answered, still stored
    assert inbound_rows(engine)[-1].patient_id is None


def test_a_number_shared_by_two_patients_acts_for_both(rt, engine, site):
    ana = enrolled(rt)
    ben = enrolled(rt, first_name="Ben", email="ben@example.org")
    twiml_text(site.text("STOP"))
    assert sorted(r.patient_id for r in inbound_rows(engine)) == [ana.id, ben.id]
    for patient in (ana, ben):
        assert consents(engine, patient.id)[-1].granted is False
        assert not pending(messages(engine, patient.id, "sms"))


def test_a_repeated_delivery_of_one_reply_is_handled_once(rt, engine, site):
    patient = enrolled(rt)
    twiml_text(site.text("STOP", sid="SMrepeat"))
    twiml_text(site.text("STOP", sid="SMrepeat"))
    assert len(inbound_rows(engine)) == 1 and len(consents(engine, patient.id)) == 2


# --- signatures ------------------------------------------------------------------------

def test_unsigned_wrongly_signed_and_replayed_requests_change_nothing(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id)
    stop = {"From": PHONE, "Body": "STOP", "MessageSid": "SMin1"}
    delivered = {"MessageSid": "SMout1", "MessageStatus": "undelivered", "ErrorCode": "30005"}
    before = snapshot(engine)
    answers = [
        site.twilio("/twilio/inbound", stop, unsigned=True),
        site.twilio("/twilio/inbound", stop, signature="bm90IGEgc2lnbmF0dXJl"),
        site.twilio("/twilio/inbound", {**stop, "Body": "START"}, signature=RequestValidator(
            TWILIO_TOKEN).compute_signature(PUBLIC + "/twilio/inbound", stop)),  # body changed after signing
        site.twilio("/twilio/inbound", stop, signed_for="/twilio/status"),  # replayed to another path
        site.twilio(f"/twilio/status?m={sms.id}", delivered, unsigned=True),
        site.twilio(f"/twilio/status?m={sms.id}", delivered, signed_for="/twilio/inbound"),
        site.twilio(f"/twilio/status?m={sms.id}", delivered, signed_for=f"/twilio/status?m={sms.id + 1}"),
        site.twilio(f"/twilio/status?m={sms.id}", delivered, signature=RequestValidator(
            "another-token").compute_signature(f"{PUBLIC}/twilio/status?m={sms.id}", delivered)),
    ]
    assert [a.status_code for a in answers] == [403] * len(answers)
    assert snapshot(engine) == before


def test_refusals_are_logged_with_the_number_masked(rt, engine, site, caplog):
    caplog.set_level(logging.INFO)
    site.twilio("/twilio/inbound", {"From": PHONE, "Body": "STOP"}, unsigned=True)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused and "+1******0143" in refused[0] and PHONE not in refused[0] and "STOP" not in refused[0]


# --- status callbacks -------------------------------------------------------------------

def events_of(engine, message_id: int) -> list[tuple[str, str | None]]:
    with Session(engine) as session:
        return session.execute(sa.select(MessageEvent.kind, MessageEvent.detail)
                               .where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)).all()


def test_delivered_by_m_and_by_sid_and_never_backwards(rt, engine, site):
    patient = enrolled(rt)
    one, two = pending(messages(engine, patient.id, "sms"))[:2]
    mark(engine, one.id, provider_id="SMone")
    mark(engine, two.id, provider_id="SMtwo")
    assert site.callback("delivered", m=one.id, sid="SMone").status_code == 204
    assert site.callback("delivered", sid="SMtwo").status_code == 204  # no m: found by MessageSid
    assert [get(engine, Message, i).status for i in (one.id, two.id)] == ["delivered", "delivered"]
    settled = snapshot(engine)
    # Out of order and repeated: "sent" after "delivered", the same callback twice, a late failure.
    for late in ("sent", "delivered", "queued"):
        assert site.callback(late, m=one.id, sid="SMone").status_code == 204
    assert site.callback("undelivered", m=one.id, sid="SMone", code="30005").status_code == 204
    assert snapshot(engine) == settled
    assert events_of(engine, one.id)[-1] == ("delivered", None)


def test_a_callback_that_beats_our_record_stores_the_sid(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id, to="sending", provider_id=None)
    assert site.callback("delivered", m=sms.id, sid="SMearly").status_code == 204
    row = get(engine, Message, sms.id)
    assert (row.status, row.provider_id) == ("delivered", "SMearly")


def test_a_sent_callback_settles_an_unconfirmed_send(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id, to="unconfirmed", provider_id=None)
    site.callback("sent", m=sms.id, sid="SMtook")
    row = get(engine, Message, sms.id)
    assert (row.status, row.provider_id) == ("sent", "SMtook")


def test_undelivered_30005_flags_the_phone_and_cancels_its_other_sms(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id)
    assert site.callback("undelivered", m=sms.id, code="30005").status_code == 204
    row = get(engine, Message, sms.id)
    assert (row.status, row.reason, row.error) == ("undelivered", "twilio:30005", "twilio:30005")
    assert get(engine, Patient, patient.id).phone_invalid
    others = [m for m in messages(engine, patient.id, "sms") if m.id != sms.id]
    assert others and all((m.status, m.reason) == ("cancelled", "contact_invalid") for m in others)
    assert pending(messages(engine, patient.id, "email"))  # the email address is still good


def test_failed_30006_for_a_number_staff_have_since_changed_flags_nothing(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id, contact="+12125550100")
    site.callback("failed", m=sms.id, code="30006")
    assert get(engine, Message, sms.id).status == "failed"
    assert not get(engine, Patient, patient.id).phone_invalid


def test_undelivered_30032_pauses_sms_for_every_worker(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id)
    site.callback("undelivered", m=sms.id, code="30032")
    state = get(engine, ChannelState, "sms")
    assert state.paused and state.reason.startswith("twilio:30032")
    assert timedelta(minutes=9) < state.until - START <= timedelta(minutes=11)
    assert get(engine, Message, sms.id).status == "undelivered"
    assert not get(engine, Patient, patient.id).phone_invalid


def test_30007_is_counted_and_30003_only_recorded(rt, engine, site):
    patient = enrolled(rt)
    one, two = pending(messages(engine, patient.id, "sms"))[:2]
    mark(engine, one.id, provider_id="SMone")
    mark(engine, two.id, provider_id="SMtwo")
    site.callback("undelivered", m=one.id, sid="SMone", code="30007")
    site.callback("undelivered", m=one.id, sid="SMone", code="30007")  # a repeat is not counted twice
    site.callback("undelivered", m=two.id, sid="SMtwo", code="30003")
    with Session(engine) as session:
        assert outbox.carrier_filtered(session) == 1
    assert get(engine, Message, two.id).reason == "twilio:30003"
    assert not get(engine, Patient, patient.id).phone_invalid and get(engine, ChannelState, "sms") is None


def test_unknown_messages_and_other_attempts_change_nothing(rt, engine, site):
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id, provider_id="SMmine")
    before = snapshot(engine)
    assert site.callback("delivered", m=99999, sid="SMnobody").status_code == 204
    assert site.callback("delivered", sid="SMnobody").status_code == 204
    assert site.callback("undelivered", m=sms.id, sid="SMearlier-attempt", code="30005").status_code == 204
    assert site.callback("delivered", m="abc", sid="SMnobody").status_code == 204
    assert snapshot(engine) == before


# --- unsubscribe -----------------------------------------------------------------------

def test_get_shows_what_the_button_does_and_changes_nothing(rt, engine, site):
    patient = enrolled(rt)
    before = snapshot(engine)
    page = site.get(f"/u/{make_token(patient.id, SECRET)}")
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    assert "stop care emails" in page.text
    assert snapshot(engine) == before


def test_one_click_post_revokes_email_consent_and_cancels_pending_email(rt, engine, site):
    patient = enrolled(rt)
    emails = pending(messages(engine, patient.id, "email"))
    sms = {m.id: m.status for m in messages(engine, patient.id, "sms")}
    answer = site.post(f"/u/{make_token(patient.id, SECRET)}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and "Location" not in answer.headers
    latest = consents(engine, patient.id, "email")[-1]
    assert (latest.granted, latest.source, latest.evidence) == (False, "email_unsubscribe", "one-click unsubscribe")
    after = {m.id: m for m in messages(engine, patient.id)}
    assert emails and all((after[m.id].status, after[m.id].reason) == ("cancelled", "opted_out") for m in emails)
    assert {i: after[i].status for i in sms} == sms
    # The page's own form, and a second click: still 200, nothing more recorded.
    assert site.post(f"/u/{make_token(patient.id, OLD_SECRET)}").status_code == 200
    assert len(consents(engine, patient.id, "email")) == 2


def test_forged_altered_and_truncated_tokens_get_404_and_change_nothing(rt, engine, site):
    patient = enrolled(rt)
    other = enrolled(rt, phone="+12125550144", email="ben@example.org", first_name="Ben")
    good = make_token(patient.id, SECRET)
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    tokens = [make_token(patient.id, "someone-elses-key"), flipped, good[:-3], f"{other.id}.{good.split('.')[1]}",
              f"0{good}", str(patient.id), "garbage"]
    before = snapshot(engine)
    for token in tokens:
        assert site.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 404, token
        assert site.get(f"/u/{token}").status_code == 404, token
    assert snapshot(engine) == before


# --- health -------------------------------------------------------------------------------

def test_healthz_answers_200_with_the_database_up_whatever_the_worker(rt, engine, site):
    answer = site.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"database": "ok", "worker_heartbeat_age_seconds": None, "paused_channels": []}
    with transaction(engine) as session:
        session.add(ChannelState(channel="sms", paused=True, reason="staff", since=START, until=None))
    assert site.get("/healthz").json()["paused_channels"] == ["sms"]


def test_healthz_answers_503_when_the_database_does_not(tmp_path, clinic_dir):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database file" * 100)
    with serving(create_app(web_settings(f"sqlite:///{broken}", clinic_dir))) as running:
        assert running.get("/healthz").status_code == 503
        assert running.get("/healthz/worker").status_code == 503


def test_healthz_worker_needs_a_heartbeat_younger_than_three_intervals(rt, engine, site):
    # Heartbeats are in real time whatever DRIPCARE_NOW says (the site runs on 2027's clock).
    real = datetime.now(timezone.utc)
    assert site.get("/healthz/worker").status_code == 503  # no worker at all
    with transaction(engine) as session:
        session.add(Worker(id="old", hostname="h", pid=1, started_at=real - timedelta(hours=1),
                           heartbeat_at=real - timedelta(minutes=5)))
    answer = site.get("/healthz/worker")
    assert answer.status_code == 503 and answer.json()["worker"] == "stale"
    assert site.get("/healthz").status_code == 200  # the web process stays healthy
    with transaction(engine) as session:
        session.add(Worker(id="fresh", hostname="h", pid=2, started_at=real, heartbeat_at=real))
    answer = site.get("/healthz/worker")
    assert answer.status_code == 200 and 0 <= answer.json()["worker_heartbeat_age_seconds"] < 45


def test_a_heartbeat_from_a_simulated_future_is_never_healthy(rt, engine, site):
    with transaction(engine) as session:
        session.add(Worker(id="simulated", hostname="h", pid=3, started_at=START, heartbeat_at=START))
    answer = site.get("/healthz/worker")
    assert answer.status_code == 503 and answer.json()["worker"] != "ok"


# --- start-up ----------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["TWILIO_AUTH_TOKEN", "DRIPCARE_PUBLIC_BASE_URL"])
def test_without_what_it_checks_signatures_with_the_twilio_routes_answer_503(rt, engine, clinic_dir, missing):
    values = web_settings(str(engine.url), clinic_dir).env
    del values[missing]
    patient = enrolled(rt)
    sms = first_sms(engine, patient.id)
    mark(engine, sms.id)
    before = snapshot(engine)
    with serving(create_app(Settings(values))) as running:
        assert running.text("STOP").status_code == 503
        assert running.callback("undelivered", m=sms.id, code="30005").status_code == 503
        assert running.get("/healthz").status_code == 200
        assert running.get(f"/u/{make_token(patient.id, SECRET)}").status_code == 200
    assert snapshot(engine) == before


@pytest.mark.parametrize("variable, value", [
    ("DRIPCARE_LOG_FORMAT", "xml"), ("DRIPCARE_PUBLIC_BASE_URL", "care.example"),
    ("DRIPCARE_DISPATCH_INTERVAL", "soon"), ("DATABASE_URL", "mysql://x/y")])
def test_a_bad_setting_is_named_in_one_line(engine, clinic_dir, variable, value):
    values = {**web_settings(str(engine.url), clinic_dir).env, variable: value}
    with pytest.raises(SettingsError) as refused:
        create_app(Settings(values))
    assert len(refused.value.lines) == 1 and refused.value.lines[0].startswith(variable)


def test_every_bad_setting_is_named_at_once(engine, clinic_dir):
    values = {**web_settings(str(engine.url), clinic_dir).env, "DRIPCARE_LOG_FORMAT": "xml",
              "DRIPCARE_DISPATCH_INTERVAL": "-1", "DRIPCARE_NOW": "yesterday"}
    with pytest.raises(SettingsError) as refused:
        create_app(Settings(values))
    assert [line.split("=")[0].split(":")[0] for line in refused.value.lines] == [
        "DRIPCARE_NOW", "DRIPCARE_LOG_FORMAT", "DRIPCARE_DISPATCH_INTERVAL"]


@contextmanager
def procfile_web(tmp_path: Path, settings: dict[str, str]):
    """The Procfile's web line as a platform runs it, from an app folder holding the
    checkout's Procfile and gunicorn.conf.py (`fleet.Web`); its log in a file."""
    web = Web(environment(settings["DATABASE_URL"], Path(settings["DRIPCARE_CONFIG_DIR"]).parent, **settings),
              tmp_path / "app")
    try:
        yield web
    finally:
        web.stop()


def test_the_procfile_web_command_starts_and_answers_healthz(tmp_path, clinic_dir):
    settings = web_settings(f"sqlite:///{tmp_path / 'procfile.db'}", clinic_dir).env
    with procfile_web(tmp_path, settings) as web:
        assert wait_for(web.up, limit=15), web.log()
        assert "/twilio/status and /twilio/inbound (signatures checked for" in web.log()


def test_gunicorn_on_defaults_answers_health_and_turns_twilio_away(tmp_path, rt, engine, clinic_dir):
    """SPEC 3.1: no Twilio settings at all; health and unsubscribe work, Twilio gets 503."""
    settings = {key: value for key, value in web_settings(str(engine.url), clinic_dir).env.items()
                if key not in ("TWILIO_AUTH_TOKEN", "DRIPCARE_PUBLIC_BASE_URL")}
    patient = enrolled(rt)
    before = snapshot(engine)
    with procfile_web(tmp_path, settings) as web:
        assert wait_for(web.up, limit=15), web.log()
        site = Site(web.url)
        assert site.text("STOP").status_code == 503
        assert site.callback("delivered", m=first_sms(engine, patient.id).id).status_code == 503
        assert site.get(f"/u/{make_token(patient.id, SECRET)}").status_code == 200
    assert snapshot(engine) == before
    ours = [line for line in web.log().splitlines() if " dripcare." in line]
    first = ours[0]
    assert "/twilio/status and /twilio/inbound are off" in first and "503" in first
    assert "TWILIO_AUTH_TOKEN and DRIPCARE_PUBLIC_BASE_URL are not set" in first
    assert "/healthz" in first.split("are off")[1]


def test_gunicorn_with_bad_settings_names_each_and_stops_without_a_traceback(tmp_path, engine, clinic_dir):
    settings = {**web_settings(str(engine.url), clinic_dir).env, "DRIPCARE_LOG_FORMAT": "xml",
                "DRIPCARE_DISPATCH_INTERVAL": "soon"}
    with procfile_web(tmp_path, settings) as web:
        assert wait_for(lambda: web.process.poll() is not None, limit=20), web.log()
        output = web.log()
    assert web.process.returncode != 0
    assert "Traceback" not in output
    # One line each (once per gunicorn worker that booted), the variable and what is wrong.
    named = {line.split(": ", 1)[1] for line in output.splitlines()
             if "DRIPCARE_LOG_FORMAT" in line or "DRIPCARE_DISPATCH_INTERVAL" in line}
    assert len(named) == 2 and all("'xml'" in n or "'soon'" in n for n in named), output


# --- the inbox, and `dripcare web`, through the real CLI ----------------------------------

def test_inbox_lists_the_replies_the_web_stored_urgent_first(cli, tmp_path, clinic_dir, clock):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with serving(create_app(web_settings(url, clinic_dir))) as running:
        clinic = load_clinic(clinic_dir / "config")
        cli_rt = Runtime(make_engine(url), clinic, load_campaigns(clinic_dir / "config", clinic,
                                                                  clinic_dir / "messages"), clock)
        patient = enrolled(cli_rt)
        running.text("What should I eat before?")
        running.text("I want to hurt myself")
        running.text("hello?", sender="+14155550199")
    result = cli("inbox", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [(r["taken_as"], r["urgent"], r["patient_id"]) for r in rows] == [
        ("crisis", True, patient.id), ("reply", False, None), ("reply", False, patient.id)]
    assert rows[0]["body"] == "I want to hurt myself"
    assert rows[0]["received_at"].startswith("2027-03-01T08:00") and rows[0]["received_at"].endswith("-07:00")
    assert {"id", "patient_id", "from", "body", "received_at", "taken_as", "urgent"} <= set(rows[0])
    urgent = json.loads(cli("inbox", "--urgent", "--json").out)
    assert [r["taken_as"] for r in urgent] == ["crisis"]
    table = cli("inbox")
    assert table.code == 0 and "URGENT" in table.out


def test_dripcare_web_refuses_a_bad_port_in_one_line(cli):
    for port in ("abc", "0", "70000"):
        result = cli("web", "--port", port)
        assert result.code == 1 and result.err.count("\n") == 1 and "--port" in result.err
