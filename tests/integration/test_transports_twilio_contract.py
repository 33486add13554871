"""Every request TwilioSms sends, through the real SDK, validated by Prism against Twilio's contract.

Prism runs with --errors: a request that breaks the contract comes back 422, which
TwilioSms turns into a TransportError, so these tests fail instead of passing on a made-up 201.
"""

from datetime import datetime, timedelta, timezone

import pytest

from dripcare.delivery.transports.base import Outgoing, TransportError
from dripcare.delivery.transports.twilio_sms import TwilioSms

from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, SERVICE_SID

pytestmark = pytest.mark.contract

NOW = datetime(2027, 6, 9, 16, 0, tzinfo=timezone.utc)


def outgoing(body="Riverbend Clinic: your visit is tomorrow at 10:00. Reply STOP to opt out.",
             left=timedelta(hours=3), message_id=41):
    return Outgoing(message_id=message_id, channel="sms", to="+15555550123", body=body,
                    expires_at=NOW + left, now=NOW)


def assert_twilio_sid(sid):
    assert sid.startswith("SM") and len(sid) == 34, sid


@pytest.mark.parametrize("sender", [
    {"messaging_service_sid": SERVICE_SID},
    {"from_number": FROM_NUMBER},
    {"messaging_service_sid": SERVICE_SID, "from_number": FROM_NUMBER},
], ids=["messaging-service", "from-number", "both"])
def test_a_message_with_status_callback_and_validity_is_accepted(prism_url, sender):
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, **sender, api_base_url=prism_url,
                    public_base_url="https://care.riverbend.example")
    assert_twilio_sid(sms.send(outgoing()))


def test_a_message_without_status_callback_is_accepted(prism_url):
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM_NUMBER, api_base_url=prism_url)
    assert "status_callback" not in sms.create_params(outgoing())
    assert_twilio_sid(sms.send(outgoing()))


@pytest.mark.parametrize("left", [timedelta(days=3), timedelta(seconds=0.4)], ids=["capped", "floored"])
def test_validity_period_at_its_bounds_is_accepted(prism_url, left):
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, messaging_service_sid=SERVICE_SID, api_base_url=prism_url)
    assert sms.create_params(outgoing(left=left))["validity_period"] in (36000, 1)
    assert_twilio_sid(sms.send(outgoing(left=left)))


def test_a_unicode_body_is_accepted(prism_url):
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM_NUMBER, api_base_url=prism_url)
    assert_twilio_sid(sms.send(outgoing(body="Clínica Riverbend: su cita es mañana 🙂")))


def test_prism_refuses_a_request_that_breaks_the_contract(prism_url):
    # Proves the check is live: a StatusCallback that is not a URL must not pass.
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM_NUMBER, api_base_url=prism_url,
                    public_base_url="not a url")
    with pytest.raises(TransportError) as caught:
        sms.send(outgoing())
    assert caught.value.code == "http:422"
