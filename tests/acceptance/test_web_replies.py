"""What patients write back, through real signed HTTP to the web process (SPEC 8 "Reading
a reply"): the reply tables of tests/unit/test_replies.py, a crisis that asks to stop,
replies in the patient's locale, the clinic told (email and on-call SMS, never the text),
bodies cut at 1,600 characters, oversize requests refused, clinic.toml taken while running."""

from __future__ import annotations

import http.client
import logging
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlmodel import Session
from twilio.request_validator import RequestValidator

from dripcare.domain.replies import HELP_KEYWORDS, OPT_IN_KEYWORDS
from dripcare.domain.unsubscribe import make_token
from dripcare.store import config_files
from dripcare.web import create_app

from tests.acceptance.test_web import (
    PHONE, PUBLIC, SECRET, TWILIO_TOKEN, clinic_text, consents, enrolled, inbound_rows, messages, pending, serving,
    snapshot, twiml_text, twiml_texts, wait_for, web_settings,
)
from tests.support.smtp import Mailbox, parse
from tests.support.twilio_fakes import ACCOUNT_SID, free_port
from tests.unit.test_replies import CRISES, NEITHER, OPT_OUTS

ON_CALL = "+17805550199"


def numbered_phone(n: int) -> str:
    return f"+1212555{1000 + n:04d}"


@pytest.fixture
def site(engine, clinic_dir, rt):
    with serving(create_app(web_settings(str(engine.url), clinic_dir), runtime=rt)) as running:
        yield running


def edit_clinic(clinic_dir: Path, *, sms_es: str | None = None, **replace: str) -> None:
    """clinic.toml with some values replaced and, when given, [sms.es] replaced by ours."""
    path = clinic_dir / "config" / "clinic.toml"
    text = path.read_text(encoding="utf-8")
    if sms_es is not None:
        text = re.sub(r"(?ms)^\[sms\.es\].*?(?=^\[|\Z)", "", text) + f"\n[sms.es]\n{sms_es}\n"
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


# --- the tables, through signed HTTP ------------------------------------------------------------

def test_every_opt_out_phrasing_revokes_sms_consent_and_cancels_pending_sms(rt, engine, site):
    people = [enrolled(rt, phone=numbered_phone(n), email=None, consent=["sms"]) for n in range(len(OPT_OUTS))]
    expected = clinic_text(rt, "opt_out_reply")
    for patient, text in zip(people, OPT_OUTS):
        before = pending(messages(engine, patient.id))
        assert before
        assert twiml_text(site.text(text, sender=patient.phone)) == expected, text
        latest = consents(engine, patient.id)[-1]
        assert (latest.granted, latest.source, latest.evidence, latest.by) == (False, "sms_keyword", text, "sms")
        after = {m.id: m for m in messages(engine, patient.id)}
        assert all((after[m.id].status, after[m.id].reason) == ("cancelled", "opted_out") for m in before), text
    assert [(r.taken_as, r.urgent) for r in inbound_rows(engine)] == [("opt_out", False)] * len(OPT_OUTS)


@pytest.mark.parametrize("keyword", sorted(OPT_IN_KEYWORDS) + ["SÍ", "Start"])
def test_every_opt_in_keyword_after_stop_gives_consent_again_and_plans_the_sms(rt, engine, site, keyword):
    patient = enrolled(rt)
    assert twiml_text(site.text("STOP")) == clinic_text(rt, "opt_out_reply")
    assert not [m for m in pending(messages(engine, patient.id)) if m.channel == "sms"]
    assert twiml_text(site.text(keyword)) == clinic_text(rt, "opt_in_reply")
    latest = consents(engine, patient.id)[-1]
    assert (latest.granted, latest.source, latest.evidence) == (True, "sms_keyword", keyword)
    assert [m for m in pending(messages(engine, patient.id)) if m.channel == "sms"]


@pytest.mark.parametrize("keyword", sorted(HELP_KEYWORDS) + ["Help"])
def test_every_help_keyword_gets_the_help_reply_and_changes_no_consent(rt, engine, site, keyword):
    patient = enrolled(rt)
    before = consents(engine, patient.id)
    assert twiml_text(site.text(keyword)) == clinic_text(rt, "help_reply")
    assert consents(engine, patient.id) == before
    assert [r.taken_as for r in inbound_rows(engine)] == ["help"]


def test_every_crisis_phrasing_gets_the_crisis_reply_and_is_urgent(rt, engine, site):
    patient = enrolled(rt)
    before = snapshot(engine)
    for text in CRISES:
        reply = twiml_texts(site.text(text))
        assert len(reply) == 1 and reply[0].startswith("If you are in danger now, call 911."), text
        assert "988" in reply[0][:160]
    assert [(r.taken_as, r.urgent) for r in inbound_rows(engine)] == [("crisis", True)] * len(CRISES)
    after = snapshot(engine)
    assert (after["consent"], after["messages"]) == (before["consent"], before["messages"])
    assert consents(engine, patient.id)[-1].granted


def test_ordinary_replies_change_nothing_and_get_the_unmonitored_reply(rt, engine, site):
    patient = enrolled(rt)
    before = snapshot(engine)
    unmonitored = clinic_text(rt, "unmonitored_reply")
    for text in NEITHER:
        assert twiml_text(site.text(text)) == unmonitored, text
    rows = inbound_rows(engine)
    assert [(r.taken_as, r.urgent, r.patient_id) for r in rows] == [("reply", False, patient.id)] * len(NEITHER)
    after = snapshot(engine)
    assert (after["consent"], after["messages"]) == (before["consent"], before["messages"])


def test_a_crisis_that_says_stop_is_both_a_crisis_and_an_opt_out(rt, engine, site, caplog):
    caplog.set_level(logging.INFO)
    patient = enrolled(rt)
    sms = pending(messages(engine, patient.id, "sms"))
    crisis, opt_out = twiml_texts(site.text("STOP texting me I want to die"))
    assert crisis.startswith("If you are in danger now, call 911.") and "988" in crisis
    assert opt_out == clinic_text(rt, "opt_out_reply")
    row = inbound_rows(engine)[-1]
    assert (row.taken_as, row.urgent) == ("crisis", True)
    latest = consents(engine, patient.id)[-1]
    assert (latest.granted, latest.source) == (False, "sms_keyword")
    after = {m.id: m for m in messages(engine, patient.id)}
    assert sms and all((after[m.id].status, after[m.id].reason) == ("cancelled", "opted_out") for m in sms)
    assert pending(messages(engine, patient.id, "email"))  # email consent is the patient's other choice
    assert f"urgent reply waiting in dripcare inbox: id {row.id}" in [r.getMessage() for r in caplog.records]


def test_the_crisis_reply_is_sent_even_with_keyword_replies_off(rt, engine, clinic_dir):
    edit_clinic(clinic_dir, **{"keyword_replies = true": "keyword_replies = false"})
    patient = enrolled(rt)
    with serving(create_app(web_settings(str(engine.url), clinic_dir))) as running:
        assert twiml_texts(running.text("STOP")) == []
        crisis = twiml_texts(running.text("ALTO, me quiero matar"))
    assert len(crisis) == 1 and "911" in crisis[0] and "988" in crisis[0]
    assert not consents(engine, patient.id)[-1].granted


def test_a_crisis_reply_that_lacks_the_numbers_gets_them_first(rt, engine, clinic_dir):
    path = clinic_dir / "config" / "clinic.toml"
    text = re.sub(r"(?m)^crisis_reply = .*$", "", path.read_text(encoding="utf-8"), count=1)
    ours = 'crisis_reply = "We have told the care team. {{ clinic.sms_name }}"'
    path.write_text(text.replace("[sms]\n", f"[sms]\n{ours}\n", 1), encoding="utf-8")
    enrolled(rt)
    with serving(create_app(web_settings(str(engine.url), clinic_dir))) as running:
        reply = twiml_text(running.text("I feel unsafe"))
    assert reply.startswith("If you are in danger now, call 911. Call or text 988")
    assert reply.endswith("We have told the care team. Riverbend Clinic")


# --- in the patient's locale ---------------------------------------------------------------------

SPANISH = """help_reply = "{{ clinic.sms_name }}: AYUDA ES. Llame al {{ clinic.phone }}."
opt_out_reply = "{{ clinic.sms_name }}: BAJA ES. Responda COMENZAR para volver."
opt_in_reply = "{{ clinic.sms_name }}: ALTA ES."
unmonitored_reply = "{{ clinic.sms_name }}: NO SE ATIENDE ES. Llame al {{ clinic.phone }}."
crisis_reply = "Si está en peligro, llame al {{ clinic.emergency_number }} o al {{ clinic.crisis_line }}. CRISIS ES."
"""


def test_replies_are_in_the_patients_locale(rt, engine, clinic_dir):
    edit_clinic(clinic_dir, sms_es=SPANISH)
    spanish = enrolled(rt, phone="+12125550150", first_name="Lucía")
    english = enrolled(rt, phone="+12125550151", first_name="Ben")
    with Session(engine) as session:
        session.execute(sa.text("UPDATE patient SET locale = 'es-MX' WHERE id = :id"), {"id": spanish.id})
        session.commit()
    with serving(create_app(web_settings(str(engine.url), clinic_dir))) as running:
        said = {text: twiml_texts(running.text(text, sender=spanish.phone))
                for text in ("AYUDA", "¿A qué hora es mi cita?", "quiero morir", "ALTO", "COMENZAR")}
        english_help = twiml_text(running.text("HELP", sender=english.phone))
    assert said["AYUDA"] == ["Riverbend Clinic: AYUDA ES. Llame al +1 780 555 0100."]
    assert said["¿A qué hora es mi cita?"] == ["Riverbend Clinic: NO SE ATIENDE ES. Llame al +1 780 555 0100."]
    assert said["quiero morir"] == ["Si está en peligro, llame al 911 o al 988. CRISIS ES."]
    assert said["ALTO"] == ["Riverbend Clinic: BAJA ES. Responda COMENZAR para volver."]
    assert said["COMENZAR"] == ["Riverbend Clinic: ALTA ES."]
    assert english_help == clinic_text(rt, "help_reply") and "ES." not in english_help


def test_a_shared_number_answers_in_the_first_patients_locale_and_an_unknown_in_the_clinics(rt, engine, clinic_dir):
    edit_clinic(clinic_dir, sms_es=SPANISH)
    mother = enrolled(rt, phone="+12125550152", first_name="Rosa")
    enrolled(rt, phone="+12125550152", first_name="Ana")
    with Session(engine) as session:
        session.execute(sa.text("UPDATE patient SET locale = 'es' WHERE id = :id"), {"id": mother.id})
        session.commit()
    with serving(create_app(web_settings(str(engine.url), clinic_dir))) as running:
        shared = twiml_text(running.text("AYUDA", sender=mother.phone))
        unknown = twiml_text(running.text("AYUDA", sender="+14155550199"))
    assert shared == "Riverbend Clinic: AYUDA ES. Llame al +1 780 555 0100."
    assert unknown == clinic_text(rt, "help_reply")


def test_unsubscribe_pages_are_in_the_patients_locale(rt, engine, site):
    spanish = enrolled(rt, phone="+12125550153", email="lucia@example.org", first_name="Lucía")
    with Session(engine) as session:
        session.execute(sa.text("UPDATE patient SET locale = 'es' WHERE id = :id"), {"id": spanish.id})
        session.commit()
    english = enrolled(rt)
    page = site.get(f"/u/{make_token(spanish.id, SECRET)}")
    assert page.status_code == 200 and '<html lang="es">' in page.text and "Darme de baja" in page.text
    assert '<html lang="en">' in site.get(f"/u/{make_token(english.id, SECRET)}").text
    done = site.post(f"/u/{make_token(spanish.id, SECRET)}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "Ya no recibirá más correos" in done.text
    not_valid = site.get("/u/1.forged")
    assert not_valid.status_code == 404 and '<html lang="en">' in not_valid.text and "not valid" in not_valid.text


# --- the clinic told, never what the patient wrote -------------------------------------------------

def test_an_urgent_reply_texts_the_on_call_phone_and_emails_the_clinic_without_the_text(
        rt, engine, clinic_dir, fake_twilio):
    path = clinic_dir / "config" / "clinic.toml"
    text = re.sub(r"(?m)^#? *urgent_sms = .*$", "", path.read_text(encoding="utf-8"))
    path.write_text(text.replace("[inbox]", '[inbox]\nurgent_sms = "+1 780 555 0199"'), encoding="utf-8")
    enrolled(rt)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    senders = {"DRIPCARE_EMAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
               "SMTP_SECURITY": "none", "EMAIL_FROM": "dripcare@riverbend.example",
               "DRIPCARE_SMS_TRANSPORT": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
               "TWILIO_FROM_NUMBER": "+17805550100", "TWILIO_API_BASE_URL": fake_twilio.url}
    try:
        with serving(create_app(web_settings(str(engine.url), clinic_dir, **senders))) as running:
            assert "911" in twiml_text(running.text("I took all my pills and I want to die"))
            assert wait_for(lambda: len(fake_twilio.created) == 1 and len(mailbox.received) == 1)
            assert "not monitored" in twiml_text(running.text("Can I eat before my session?"))
            assert wait_for(lambda: len(mailbox.received) == 2)
    finally:
        smtp.stop()
    text = fake_twilio.created[0]
    assert text["To"] == ON_CALL and "URGENT" in text["Body"] and "dripcare inbox" in text["Body"]
    assert not re.search(r"pills|die|0143", text["Body"])
    assert len(fake_twilio.created) == 1  # an ordinary reply is emailed, not texted
    urgent, ordinary = (parse(e) for e in mailbox.received)
    assert [e.rcpt_tos for e in mailbox.received] == [["care@riverbend.example"]] * 2
    assert "URGENT" in urgent["Subject"] and "URGENT" not in ordinary["Subject"]
    for mail in (urgent, ordinary):
        body = mail.get_body().get_content()
        assert "dripcare inbox" in body and not re.search(r"pills|die|eat|0143", body)


def test_missing_smtp_settings_turn_notices_off_but_the_web_process_answers(rt, engine, clinic_dir, caplog):
    caplog.set_level(logging.INFO)
    enrolled(rt)
    with serving(create_app(web_settings(str(engine.url), clinic_dir, DRIPCARE_EMAIL_TRANSPORT="smtp"))) as running:
        assert "911" in twiml_text(running.text("I want to die"))
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("clinic notices by email are off") and "SMTP_HOST" in line for line in said)
    assert inbound_rows(engine)[-1].urgent


# --- what is stored, and what is refused ------------------------------------------------------------

def test_an_inbound_body_is_stored_cut_at_1600_characters(rt, engine, site):
    enrolled(rt)
    body = "When is my next session? " + "é" * 3000 + "I want to die"
    assert twiml_text(site.text(body)) == clinic_text(rt, "unmonitored_reply")
    row = inbound_rows(engine)[-1]
    assert row.body == body[:1600] and len(row.body) == 1600
    # Read as stored: what staff see in the inbox is what was judged (Twilio sends at most 1,600).
    assert (row.taken_as, row.urgent) == ("reply", False)


def test_a_ten_megabyte_signed_body_gets_413_and_changes_nothing(rt, engine, site):
    enrolled(rt)
    params = {"From": PHONE, "To": "+17805550100", "Body": "STOP " + "x" * (10 * 1024 * 1024), "MessageSid": "SMbig"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + "/twilio/inbound", params)
    before = snapshot(engine)
    status = _post_streaming(site.url + "/twilio/inbound", urlencode(params).encode(), signature)
    assert status == 413
    assert snapshot(engine) == before


def _post_streaming(url: str, body: bytes, signature: str) -> int:
    """POST a body in chunks, as a client would; the server may answer before it has all."""
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    connection.putrequest("POST", where.path)
    for name, value in (("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(body))),
                        ("X-Twilio-Signature", signature)):
        connection.putheader(name, value)
    connection.endheaders()
    try:
        for start in range(0, len(body), 1 << 16):
            connection.send(body[start:start + (1 << 16)])
    except OSError:
        pass  # the server stopped reading: its answer is already on the way
    try:
        return connection.getresponse().status
    finally:
        connection.close()


# --- clinic.toml taken while running ------------------------------------------------------------------

def test_a_changed_clinic_toml_changes_the_help_reply_and_a_broken_one_keeps_the_last_good(
        rt, engine, clinic_dir, clock, site):
    enrolled(rt)
    path = clinic_dir / "config" / "clinic.toml"
    first = twiml_text(site.text("HELP"))
    edited = re.sub(r"(?m)^help_reply = .*$", 'help_reply = "{{ clinic.sms_name }}: new help text. Call us."',
                    path.read_text(encoding="utf-8"), count=1)
    path.write_text(edited, encoding="utf-8")
    clock.advance(timedelta(seconds=10))
    assert twiml_text(site.text("HELP")) == first  # clinic files are looked at every 30 s, not per request
    clock.advance(timedelta(seconds=25))
    assert twiml_text(site.text("HELP")) == "Riverbend Clinic: new help text. Call us."
    path.write_text(edited.replace("[clinic]", "[clinic"), encoding="utf-8")  # not TOML any more
    clock.advance(timedelta(seconds=31))
    assert twiml_text(site.text("HELP")) == "Riverbend Clinic: new help text. Call us."
    with Session(engine) as session:
        assert "clinic.toml" in config_files.errors(session)  # `dripcare status` shows it


def test_a_reply_delivered_twice_at_once_is_stored_once_per_patient(rt, engine, clinic_dir):
    """Twilio retries a webhook it thinks was lost; two web processes may take both at once."""
    from concurrent.futures import ThreadPoolExecutor

    from dripcare.app import inbox, patients
    from dripcare.app.notices import ClinicNotices

    patient = patients.add_patient(rt, first_name="Ana", last_name="Diaz", phone="+12125550143", consent=["sms"],
                                   by="test")
    quiet = ClinicNotices(rt)  # no transports: the notice is logged only
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: inbox.receive(rt, quiet, "+12125550143", "when is my session?", "SMtwice"),
                            range(4)))
    stored = [r for r in inbox.replies(rt, include_handled=True) if r.patient_id == patient.id]
    assert len(stored) == 1 and sum(not g.repeat for g in got) == 1


def test_a_webhook_delivered_four_times_at_once_over_http_is_stored_once_and_told_once(rt, engine, site, caplog):
    """The same retry, through signed HTTP to the threaded web process: every delivery is
    answered 200 (Twilio stops retrying), one row is stored, one notice goes out."""
    from concurrent.futures import ThreadPoolExecutor

    enrolled(rt)
    with caplog.at_level(logging.INFO), ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: site.text("when is my session?", sid="SMtwiceHTTP"), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert [(r.provider_sid, r.taken_as) for r in inbound_rows(engine)] == [("SMtwiceHTTP", "reply")]
    told = [r.getMessage() for r in caplog.records if "reply waiting in dripcare inbox" in r.getMessage()]
    assert len(told) == 1, told
