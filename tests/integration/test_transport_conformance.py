"""Every transport against the one port the dispatcher knows (DESIGN: "Transports are small
and swappable"): the same checks for console, file, Twilio (the real SDK against a
loopback Twilio), SMTP (against aiosmtpd), and the in-memory adapters tests and the demo
use. A transport that passes these can be dropped into `build_dispatcher`."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from rich.console import Console

from dripcare.delivery.transports.base import ERROR_KINDS, Outgoing, Transport, TransportError
from dripcare.delivery.transports.console import ConsoleTransport
from dripcare.delivery.transports.files import FileTransport
from dripcare.delivery.transports.smtp_email import SmtpEmail
from dripcare.delivery.transports.twilio_sms import TwilioSms
from dripcare.demo import DemoConsole
from tests.support.dispatching import ScriptedTransport
from tests.support.smtp import Mailbox
from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio, free_port

NOW = datetime(2027, 6, 9, 16, 0, tzinfo=timezone.utc)


def outgoing(channel: str, message_id: int = 7) -> Outgoing:
    to = "+12125550143" if channel == "sms" else "ana@example.org"
    return Outgoing(message_id=message_id, channel=channel, to=to, body="Your session is tomorrow at 9:30.",
                    expires_at=NOW + timedelta(hours=6), now=NOW,
                    subject="Tomorrow" if channel == "email" else None,
                    html="<p>Your session is tomorrow.</p>" if channel == "email" else None,
                    unsubscribe_url="https://care.example.org/u/1.x" if channel == "email" else None)


@contextmanager
def console(channel):
    yield ConsoleTransport(channel, Console(file=io.StringIO()))


@contextmanager
def files(channel, tmp_path):
    yield FileTransport(channel, tmp_path / "outbox")


@contextmanager
def twilio(channel, tmp_path):
    with FakeTwilio() as fake:
        yield TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM_NUMBER, api_base_url=fake.url, timeout=5)


@contextmanager
def smtp(channel, tmp_path):
    controller = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpEmail("127.0.0.1", controller.port, security="none", email_from="care@riverbend.example")
    finally:
        controller.stop()


@contextmanager
def scripted(channel, tmp_path):
    yield ScriptedTransport(channel)


@contextmanager
def demo(channel, tmp_path):
    yield DemoConsole(channel, Console(file=io.StringIO()), {7: ("Ana", "America/New_York", "welcome")})


TRANSPORTS: list[tuple[str, str, Callable]] = [
    ("console", "sms", lambda c, p: console(c)), ("console", "email", lambda c, p: console(c)),
    ("file", "sms", files), ("file", "email", files), ("twilio", "sms", twilio), ("smtp", "email", smtp),
    ("scripted", "sms", scripted), ("scripted", "email", scripted), ("demo", "sms", demo), ("demo", "email", demo),
]


@pytest.fixture(params=TRANSPORTS, ids=[f"{n}-{c}" for n, c, _ in TRANSPORTS])
def transport(request, tmp_path) -> Iterator[Transport]:
    _, channel, make = request.param
    with make(channel, tmp_path) as instance:
        yield instance


def test_it_fills_the_port(transport):
    assert isinstance(transport, Transport)
    assert transport.channel in ("sms", "email") and transport.name and isinstance(transport.development, bool)


def test_an_accepted_send_gives_a_provider_id(transport):
    provider_id = transport.send(outgoing(transport.channel))
    assert isinstance(provider_id, str) and provider_id


def test_a_lookup_answers_an_id_or_none_without_sending(transport):
    found = transport.lookup(outgoing(transport.channel, message_id=8), NOW - timedelta(minutes=5))
    assert found is None or (isinstance(found, str) and found)


def test_a_refusal_is_a_transport_error_of_a_known_kind(transport, tmp_path):
    broken = _broken(transport, tmp_path)
    with pytest.raises(TransportError) as refused:
        broken.send(outgoing(transport.channel))
    assert refused.value.kind in ERROR_KINDS and refused.value.code


def _broken(transport, tmp_path):
    """The same kind of transport, pointed at a provider that cannot take the message."""
    if isinstance(transport, TwilioSms):
        return TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM_NUMBER,
                         api_base_url=f"http://127.0.0.1:{free_port()}", timeout=2)  # nobody listens
    if isinstance(transport, SmtpEmail):
        return SmtpEmail("127.0.0.1", free_port(), security="none", email_from="care@riverbend.example", timeout=2)
    if isinstance(transport, FileTransport):
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the outbox folder should be")
        return FileTransport(transport.channel, blocker)
    if isinstance(transport, ScriptedTransport):
        return ScriptedTransport(transport.channel, [TransportError("retryable", "http:429")])
    pytest.skip(f"{transport.name} prints to a screen: it has nothing to refuse")
