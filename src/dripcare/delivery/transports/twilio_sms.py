"""SMS through Twilio's Messages API, with the official SDK (SPEC 7).

Twilio answers twice: when we create a message (the API reply) and later in a status
callback (the web process). Both are read from the one table below, so a code means
the same thing whenever it arrives.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError

from dripcare.delivery.transports.twilio_codes import TWILIO_CODES, classify_twilio_error
from dripcare.delivery.transports.base import Outgoing, TransportError, mask_contact

log = logging.getLogger("dripcare.transport")

# The SDK logs each request at INFO, query string included: a lookup's `To` is a patient's
# number, which must never reach a log unmasked (SPEC 10). Its warnings still come through.
_sdk_log = logging.getLogger("dripcare.transport.twilio_sdk")
_sdk_log.setLevel(logging.WARNING)

MAX_VALIDITY = 36000  # Twilio's upper bound for ValidityPeriod, in seconds
LOOKUP_LIMIT = 50  # a patient gets a few texts a day: 50 covers weeks of history
LOOKUP_SKEW = timedelta(minutes=5)  # our clock and Twilio's may disagree a little
TRIAL_PREFIX = "Sent from your Twilio trial account - "


def validity_period(outgoing: Outgoing) -> int:
    """Seconds Twilio may queue the message: never past its expiry, within Twilio's 1..36000."""
    seconds = int((outgoing.expires_at - outgoing.now).total_seconds())
    # The dispatcher never sends an expired row; the floor only keeps the request valid.
    return max(1, min(MAX_VALIDITY, seconds))


class TwilioSms:
    channel = "sms"
    name = "twilio"
    development = False

    def __init__(self, account_sid: str, auth_token: str, messaging_service_sid: str | None = None,
                 from_number: str | None = None, api_base_url: str | None = None,
                 public_base_url: str | None = None, timeout: float = 10.0):
        if not (messaging_service_sid or from_number):
            raise ValueError("TwilioSms needs a messaging service SID or a From number")
        self.messaging_service_sid, self.from_number = messaging_service_sid, from_number
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.client = _client(account_sid, auth_token, api_base_url, timeout)
        self._messages = self.client.api.v2010.account.messages

    def send(self, outgoing: Outgoing) -> str:
        try:
            message = self._messages.create(**self.create_params(outgoing))
        except TwilioException as error:
            raise _api_error(error) from error
        except requests.RequestException as error:
            raise _network_error(error) from error
        log.info("twilio accepted message %s to %s as %s", outgoing.message_id,
                 mask_contact(outgoing.to), message.sid)
        return message.sid

    def create_params(self, outgoing: Outgoing) -> dict:
        params = {"to": outgoing.to, "body": outgoing.body, "validity_period": validity_period(outgoing)}
        # With both, Twilio sends from that number under the service's rules (opt-outs, compliance).
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            params["from_"] = self.from_number
        if self.public_base_url:
            # `m` finds the row even when the callback beats the SID into the database.
            params["status_callback"] = f"{self.public_base_url}/twilio/status?m={outgoing.message_id}"
        return params

    def lookup(self, outgoing: Outgoing, since: datetime) -> str | None:
        """The SID of a message Twilio already took for this outgoing (same number and text)."""
        # No server-side date filter: Twilio filters on DateSent, which a message still queued
        # does not have yet, and a queued message is exactly the one we must not send twice.
        try:
            recent = self._messages.list(to=outgoing.to, limit=LOOKUP_LIMIT)
        except TwilioException as error:
            raise TransportError("ambiguous", _api_error(error).code, "lookup failed") from error
        except requests.RequestException as error:
            raise TransportError("ambiguous", _network_error(error).code, "lookup failed") from error
        earliest = since - LOOKUP_SKEW
        for message in recent:
            if _is_attempt_of(message, outgoing.body, earliest):
                return message.sid
        return None


def _client(account_sid: str, auth_token: str, api_base_url: str | None, timeout: float) -> Client:
    # The SDK waits forever by default; a stuck request would hold a send slot and its lease.
    http = TwilioHttpClient(timeout=timeout, logger=_sdk_log)
    client = Client(account_sid, auth_token, http_client=http)
    if api_base_url:
        client.api.base_url = api_base_url.rstrip("/")
        # TWILIO_EDGE / TWILIO_REGION in the environment would rewrite our host into *.twilio.com.
        client.edge = client.region = None
    return client


def _is_attempt_of(message, body: str, earliest: datetime) -> bool:
    if not (message.direction or "").startswith("outbound"):
        return False
    if message.date_created is None or message.date_created < earliest:
        return False
    text = message.body or ""
    return text == body or text == TRIAL_PREFIX + body  # trial accounts prefix every text


def _api_error(error: TwilioException) -> TransportError:
    """An HTTP answer from Twilio: sorted by its Twilio code, else by the HTTP status."""
    status = getattr(error, "status", None)
    if status is None and len(error.args) > 1:  # a list page that was not 200
        status = getattr(error.args[1], "status_code", None)
    code = getattr(error, "code", None)
    # Without a Twilio code in the body the SDK repeats the HTTP status as the code.
    code = code if isinstance(code, int) and code >= 10000 else None
    kind = classify_twilio_error(code, status)
    known = TWILIO_CODES.get(code)
    detail = f"HTTP {status}" + (f": {known.meaning}" if known else "")
    return TransportError(kind, f"twilio:{code}" if code else f"http:{status}", detail)


def _network_error(error: requests.RequestException) -> TransportError:
    """No HTTP answer: safe to retry only when the request never left this machine."""
    if _never_connected(error):
        return TransportError("retryable", "connection", "could not connect to Twilio")
    if isinstance(error, requests.Timeout):
        return TransportError("ambiguous", "timeout", "Twilio did not answer in time")
    return TransportError("ambiguous", "connection_lost", f"{type(error).__name__} after the request left")


def _never_connected(error: requests.RequestException) -> bool:
    if isinstance(error, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    if not isinstance(error, requests.ConnectionError):
        return False
    cause = error.args[0] if error.args else None
    cause = getattr(cause, "reason", cause)  # urllib3's MaxRetryError wraps the real cause
    # NewConnectionError (refused, no route, DNS) is a ConnectTimeoutError in urllib3.
    return isinstance(cause, ConnectTimeoutError)
