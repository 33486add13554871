"""SmtpEmail against aiosmtpd on loopback: plain, STARTTLS, implicit TLS, AUTH, and refusals.

What the server received is parsed back with the stdlib parser and checked header by header.
"""

import logging
import ssl
from datetime import datetime, timedelta, timezone

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from dripcare.delivery.transports.base import Outgoing, TransportError
from dripcare.delivery.transports.smtp_email import SmtpEmail

from tests.support.smtp import Mailbox, parse
from tests.support.twilio_fakes import free_port

NOW = datetime(2027, 6, 9, 16, 0, tzinfo=timezone.utc)
PATIENT = "sam.rivers@example.org"
FROM = "Riverbend Clinic <care@riverbend.example>"
UNSUBSCRIBE = "https://care.riverbend.example/u/12.abcDEF"
USER, PASSWORD = "clinic", "s3cret"


def outgoing(message_id=12, to=PATIENT):
    return Outgoing(message_id=message_id, channel="email", to=to,
                    body="Hello Sam,\n\nYour session is on Friday. Café opens at 9.\n.\nA line with a dot.",
                    subject="Preparing for Friday – what to bring", html="<p>Hello Sam,</p><p>Café</p>",
                    expires_at=NOW + timedelta(hours=6), now=NOW, unsubscribe_url=UNSUBSCRIBE)


def accept_clinic_login(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture(scope="module")
def tls():
    """A throwaway CA: the server's context and a client context that trusts it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture
def smtp_server():
    """start(mailbox, **aiosmtpd options) -> port; every server is stopped after the test."""
    controllers = []

    def start(mailbox, **options):
        controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        controllers.append(controller)
        return controller.port

    yield start
    for controller in controllers:
        controller.stop()


def transport(port, security="none", ssl_context=None, timeout=5.0, **login):
    return SmtpEmail("127.0.0.1", port, security, email_from=FROM, reply_to="care@riverbend.example",
                     timeout=timeout, ssl_context=ssl_context, **login)


def send_error(email, message=None) -> TransportError:
    with pytest.raises(TransportError) as caught:
        email.send(message or outgoing())
    return caught.value


def test_plain_delivery_is_multipart_alternative_with_every_header(smtp_server):
    mailbox = Mailbox()
    provider_id = transport(smtp_server(mailbox)).send(outgoing())
    assert provider_id == "<dripcare-12@riverbend.example>"
    envelope = mailbox.received[0]
    assert envelope.mail_from == "care@riverbend.example" and envelope.rcpt_tos == [PATIENT]
    received = parse(envelope)
    assert received["From"] == FROM and received["To"] == PATIENT
    assert received["Reply-To"] == "care@riverbend.example"
    assert received["Subject"] == "Preparing for Friday – what to bring"
    assert received["Date"].datetime == NOW
    assert received["Message-ID"] == "<dripcare-12@riverbend.example>"
    assert received["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.get_content_type() == "multipart/alternative"
    plain, html = received.iter_parts()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert plain.get_content() == outgoing().body + "\n"  # the lone "." line survived dot-stuffing
    assert "<p>Café</p>" in html.get_content()


def test_the_message_id_is_the_same_on_every_attempt(smtp_server):
    mailbox = Mailbox()
    email = transport(smtp_server(mailbox))
    assert email.send(outgoing()) == email.send(outgoing())
    ids = [parse(envelope)["Message-ID"] for envelope in mailbox.received]
    assert ids == ["<dripcare-12@riverbend.example>"] * 2


def test_text_only_email_is_a_single_plain_part(smtp_server):
    mailbox = Mailbox()
    message = Outgoing(message_id=3, channel="email", to=PATIENT, body="Plain only", subject="Hi",
                       expires_at=NOW + timedelta(hours=1), now=NOW)
    transport(smtp_server(mailbox)).send(message)
    received = parse(mailbox.received[0])
    assert received.get_content_type() == "text/plain" and "List-Unsubscribe" not in received


def test_starttls_with_login(smtp_server, tls):
    server_tls, client_tls = tls
    mailbox = Mailbox()
    port = smtp_server(mailbox, tls_context=server_tls, require_starttls=True,
                       authenticator=accept_clinic_login, auth_require_tls=True)
    transport(port, "starttls", client_tls, username=USER, password=PASSWORD).send(outgoing())
    session = mailbox.sessions[0]
    assert session.ssl is not None and session.authenticated


def test_implicit_tls(smtp_server, tls):
    server_tls, client_tls = tls
    mailbox = Mailbox()
    transport(smtp_server(mailbox, ssl_context=server_tls), "ssl", client_tls).send(outgoing())
    assert len(mailbox.received) == 1  # the server speaks only TLS


def test_an_untrusted_certificate_is_an_account_problem(smtp_server, tls):
    server_tls, _ = tls
    port = smtp_server(Mailbox(), tls_context=server_tls)
    error = send_error(transport(port, "starttls", ssl.create_default_context()))
    assert (error.kind, error.code) == ("account", "tls")


def test_a_wrong_password_is_an_account_problem(smtp_server, tls):
    server_tls, client_tls = tls
    port = smtp_server(Mailbox(), tls_context=server_tls, authenticator=accept_clinic_login)
    error = send_error(transport(port, "starttls", client_tls, username=USER, password="wrong"))
    assert (error.kind, error.code) == ("account", "smtp:535")


def test_login_without_tls_offered_is_an_account_problem(smtp_server, tls):
    server_tls, _ = tls
    port = smtp_server(Mailbox(), tls_context=server_tls, authenticator=accept_clinic_login)
    error = send_error(transport(port, "none", username=USER, password=PASSWORD))
    assert error.kind == "account"  # AUTH is only offered after STARTTLS


@pytest.mark.parametrize("reply, kind, code", [
    ("450 4.2.1 Mailbox busy, try later", "retryable", "smtp:450"),
    ("421 4.3.2 Closing, try later", "retryable", "smtp:421"),
    ("550 5.1.1 <sam.rivers@example.org>: no such user", "permanent", "smtp:550"),
    ("553 5.1.3 Bad recipient address syntax", "permanent", "smtp:553"),
])
def test_recipient_refusals(smtp_server, reply, kind, code):
    error = send_error(transport(smtp_server(Mailbox(rcpt_reply=reply))))
    assert (error.kind, error.code) == (kind, code)
    assert PATIENT not in str(error)  # the server echoed the address; the error must not


def test_a_refused_sender_is_an_account_problem(smtp_server):
    error = send_error(transport(smtp_server(Mailbox(mail_reply="553 5.7.1 Sender not allowed"))))
    assert (error.kind, error.code) == ("account", "smtp:553")


def test_an_international_address_goes_out_with_smtputf8(smtp_server):
    mailbox = Mailbox()
    transport(smtp_server(mailbox)).send(outgoing(to="josé@correo.example"))
    envelope = mailbox.received[0]
    assert envelope.rcpt_tos == ["josé@correo.example"] and "SMTPUTF8" in envelope.mail_options
    assert parse(envelope)["To"] == "josé@correo.example"


def test_connection_refused_is_retryable():
    error = send_error(transport(free_port()))
    assert (error.kind, error.code) == ("retryable", "connection")


def test_no_answer_after_the_message_was_sent_is_ambiguous(smtp_server):
    mailbox = Mailbox(data_delay=1.5)
    error = send_error(transport(smtp_server(mailbox), timeout=0.3))
    assert (error.kind, error.code) == ("ambiguous", "timeout")


def test_logs_hold_only_the_masked_address(smtp_server, caplog):
    caplog.set_level(logging.DEBUG, logger="dripcare")
    transport(smtp_server(Mailbox())).send(outgoing())
    assert PATIENT not in caplog.text and "s***@example.org" in caplog.text
    assert "Café" not in caplog.text


def test_unknown_security_is_refused():
    with pytest.raises(ValueError):
        SmtpEmail("127.0.0.1", 25, "tls", email_from=FROM)
