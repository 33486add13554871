"""TwilioSms against a loopback server of our own: every answer Twilio can give, sorted right."""

import logging
from datetime import datetime, timedelta, timezone

import pytest

from dripcare.delivery.transports.base import Outgoing, TransportError
from dripcare.delivery.transports.twilio_codes import CALLBACK_ACTIONS, classify_callback_code, classify_twilio_error
from dripcare.delivery.transports.twilio_sms import TwilioSms
from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, SERVICE_SID, free_port

NOW = datetime(2027, 6, 9, 16, 0, tzinfo=timezone.utc)
PHONE = "+15555550123"
BODY = "Riverbend Clinic: your visit is tomorrow at 10:00."


def outgoing(to=PHONE, body=BODY, left=timedelta(hours=2), message_id=7):
    return Outgoing(message_id=message_id, channel="sms", to=to, body=body, expires_at=NOW + left, now=NOW)


def sms_for(url, timeout=5.0, **sender):
    sender = sender or {"messaging_service_sid": SERVICE_SID}
    return TwilioSms(ACCOUNT_SID, AUTH_TOKEN, **sender, api_base_url=url,
                     public_base_url="https://care.riverbend.example/", timeout=timeout)


def send_error(sms, message=None) -> TransportError:
    with pytest.raises(TransportError) as caught:
        sms.send(message or outgoing())
    return caught.value


def test_accepted_send_returns_the_sid_and_sends_what_the_spec_says(fake_twilio):
    sid = sms_for(fake_twilio.url).send(outgoing(left=timedelta(minutes=90)))
    assert sid.startswith("SM")
    assert fake_twilio.created == [{
        "To": PHONE, "Body": BODY, "MessagingServiceSid": SERVICE_SID, "ValidityPeriod": "5400",
        "StatusCallback": "https://care.riverbend.example/twilio/status?m=7",
    }]


def test_from_number_is_the_sender_when_there_is_no_messaging_service(fake_twilio):
    sms_for(fake_twilio.url, from_number=FROM_NUMBER).send(outgoing(left=timedelta(days=2)))
    form = fake_twilio.created[0]
    assert form["From"] == FROM_NUMBER and "MessagingServiceSid" not in form
    assert form["ValidityPeriod"] == "36000"  # Twilio's maximum


@pytest.mark.parametrize("status, code, kind, expected_code", [
    (429, 20429, "retryable", "twilio:20429"),
    (429, None, "retryable", "http:429"),
    (400, 21611, "retryable", "twilio:21611"),
    (400, 21610, "opted_out", "twilio:21610"),
    (400, 21211, "permanent", "twilio:21211"),
    (400, 21614, "permanent", "twilio:21614"),
    (400, 21635, "permanent", "twilio:21635"),
    (400, 21408, "permanent", "twilio:21408"),
    (401, 20003, "account", "twilio:20003"),
    (403, None, "account", "http:403"),
    (500, None, "ambiguous", "http:500"),
    (503, 20500, "ambiguous", "twilio:20500"),
    (400, 21999, "retryable", "twilio:21999"),
])
def test_api_answers_are_sorted_into_kinds(fake_twilio, status, code, kind, expected_code):
    fake_twilio.fail(status, code, message=f"The 'To' number {PHONE} is not a valid phone number.")
    error = send_error(sms_for(fake_twilio.url))
    assert (error.kind, error.code) == (kind, expected_code)
    assert PHONE not in str(error) and BODY not in str(error)  # Twilio's message quotes the number


def test_unknown_twilio_code_keeps_its_code(fake_twilio):
    fake_twilio.fail(400, 21602, "Message body is required.")
    error = send_error(sms_for(fake_twilio.url))
    assert (error.kind, error.code) == ("retryable", "twilio:21602")


def test_no_answer_before_the_timeout_is_ambiguous(fake_twilio):
    fake_twilio.delay = 3.0  # a real socket stall, cut short when the test ends
    error = send_error(sms_for(fake_twilio.url, timeout=0.5))
    assert (error.kind, error.code) == ("ambiguous", "timeout")
    assert len(fake_twilio.created) == 1  # the request did leave


def test_connection_refused_is_retryable():
    error = send_error(sms_for(f"http://127.0.0.1:{free_port()}"))
    assert (error.kind, error.code) == ("retryable", "connection")


def test_the_sdk_logs_no_phone_number(fake_twilio, caplog):
    caplog.set_level(logging.INFO)  # what a worker logs in production, libraries included
    caplog.set_level(logging.DEBUG, logger="dripcare")
    sms = sms_for(fake_twilio.url)
    sms.send(outgoing())
    sms.lookup(outgoing(), NOW)
    assert PHONE not in caplog.text and BODY not in caplog.text
    assert "+1******0123" in caplog.text


def test_lookup_finds_the_message_twilio_already_took(fake_twilio):
    since = datetime.now(timezone.utc) - timedelta(minutes=3)
    fake_twilio.store("SM" + "b" * 32, PHONE, BODY, since + timedelta(seconds=5))
    assert sms_for(fake_twilio.url).lookup(outgoing(), since) == "SM" + "b" * 32
    assert fake_twilio.list_queries[0]["To"] == PHONE


def test_lookup_matches_a_trial_accounts_prefixed_body(fake_twilio):
    since = datetime.now(timezone.utc)
    fake_twilio.store("SM" + "c" * 32, PHONE, "Sent from your Twilio trial account - " + BODY, since)
    assert sms_for(fake_twilio.url).lookup(outgoing(), since) == "SM" + "c" * 32


def test_lookup_finds_nothing_without_a_matching_message(fake_twilio):
    since = datetime.now(timezone.utc) - timedelta(minutes=3)
    fake_twilio.store("SM" + "1" * 32, "+15555550999", BODY, since)  # another number
    fake_twilio.store("SM" + "2" * 32, PHONE, "another text", since)  # another text
    fake_twilio.store("SM" + "3" * 32, PHONE, BODY, since - timedelta(days=2))  # an older attempt
    fake_twilio.store("SM" + "4" * 32, PHONE, BODY, since, direction="inbound")  # the patient's own text
    assert sms_for(fake_twilio.url).lookup(outgoing(), since) is None


def test_lookup_on_an_empty_account_finds_nothing(fake_twilio):
    assert sms_for(fake_twilio.url).lookup(outgoing(), NOW) is None


@pytest.mark.parametrize("status, code", [(500, None), (401, 20003)])
def test_lookup_that_fails_is_ambiguous(fake_twilio, status, code):
    fake_twilio.fail(status, code)
    with pytest.raises(TransportError) as caught:
        sms_for(fake_twilio.url).lookup(outgoing(), NOW)
    assert caught.value.kind == "ambiguous"


def test_lookup_without_a_connection_is_ambiguous():
    with pytest.raises(TransportError) as caught:
        sms_for(f"http://127.0.0.1:{free_port()}").lookup(outgoing(), NOW)
    assert (caught.value.kind, caught.value.code) == ("ambiguous", "connection")


@pytest.mark.parametrize("code, http_status, kind", [
    (20429, 429, "retryable"), (None, 429, "retryable"), (21611, 400, "retryable"),
    (21211, 400, "permanent"), (21614, 400, "permanent"), (21635, 400, "permanent"), (21408, 400, "permanent"),
    (21610, 400, "opted_out"), (20003, 401, "account"), (None, 401, "account"), (None, 403, "account"),
    (None, 500, "ambiguous"), (None, None, "ambiguous"), (21999, 400, "retryable"),
])
def test_classify_twilio_error(code, http_status, kind):
    assert classify_twilio_error(code, http_status) == kind


@pytest.mark.parametrize("code, action", [
    (30005, "contact_invalid"), (30006, "contact_invalid"), ("30005", "contact_invalid"),
    (30032, "account"), (30034, "account"), (30003, "record"), (30007, "filtered"),
    (21610, "opted_out"), (21211, "contact_invalid"), (30008, "record"), (None, "record"),
    ("", "record"), ("junk", "record"),
])
def test_callback_codes_say_what_the_web_process_does(code, action):
    assert classify_callback_code(code) == action
    assert action in CALLBACK_ACTIONS


def test_a_sender_is_required():
    with pytest.raises(ValueError):
        TwilioSms(ACCOUNT_SID, AUTH_TOKEN)
