"""The web process (SPEC 8): Twilio status callbacks and replies, one-click unsubscribe,
health checks. gunicorn serves `dripcare.web:create_app()`; `dripcare web` runs it for
development.

Nothing here trusts a caller: Twilio routes check the SDK's signature against the public
URL Twilio called, unsubscribe links check their HMAC, and a refused request changes
nothing. Logs carry ids and masked numbers, never a message body (SPEC 10).
"""

from __future__ import annotations

import html
import logging
import threading
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, Response, jsonify, request
from sqlmodel import Session
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from dripcare.app.outcomes import Outcomes
from dripcare.app.patients import set_consent
from dripcare.app.runtime import Runtime, open_runtime
from dripcare.app.status import youngest_heartbeat_age
from dripcare.config import logs
from dripcare.config.settings import Settings, SettingsError
from dripcare.delivery.templates import TemplateError
from dripcare.delivery.transports.base import Outgoing, TransportError
from dripcare.domain import replies
from dripcare.domain.privacy import mask_contact
from dripcare.domain.statuses import CALLBACK_TO, MessageStatus as S
from dripcare.domain.unsubscribe import read_token
from dripcare.store import channels, outbox
from dripcare.store.consent import consent_in_force
from dripcare.store.db import DatabaseBehind, ensure_schema, make_engine, transaction
from dripcare.store.models import InboundMessage, Message, Patient

log = logging.getLogger("dripcare.web")

# Callbacks that prove Twilio took the message: enough to settle an ambiguous send.
ACCEPTED_STATUSES = ("accepted", "queued", "sending", "sent")
KEYWORD_REPLIES = {"opt_out": "opt_out_reply", "opt_in": "opt_in_reply", "help": "help_reply"}
HEARTBEATS_ALLOWED = 3  # dispatch intervals a worker heartbeat may be old (SPEC 8)


# --- Settings the web process needs --------------------------------------------------

def public_base_url(settings: Settings) -> str:
    url = settings.public_base_url
    if url is None:
        raise SettingsError("DRIPCARE_PUBLIC_BASE_URL is not set; the web process checks Twilio signatures "
                            "against the public URL Twilio calls, e.g. https://care.example.org")
    return url


def build_runtime(settings: Settings) -> Runtime:
    """Database, clinic files and clock, once per process. A database that is down at
    start is logged, not fatal: /healthz says 503 and comes back with it."""
    engine = make_engine(settings.database_url)
    try:
        ensure_schema(engine)
    except DatabaseBehind:
        raise
    except Exception as error:
        log.error("database not reachable at start: %s", type(error).__name__)
    return open_runtime(settings, engine=engine, clock=settings.clock())


# --- Telling the clinic a reply is waiting ---------------------------------------------

class ClinicNotice:
    """A reply is waiting in `dripcare inbox`: logged, and emailed to `[inbox] notify_email`
    when SMTP is configured. Never the text or the number: PHI stays in the database."""

    def __init__(self, to: str | None, transport, clock):
        self.to, self.transport, self.clock = to, transport, clock

    def notify_clinic(self, urgent: bool, inbound_id: int) -> None:
        what = "urgent reply" if urgent else "reply"
        log.warning("%s waiting in dripcare inbox: id %s", what, inbound_id)
        if self.transport is None or not self.to:
            return
        # Off the request thread: Twilio waits for our TwiML, and a slow mail server must
        # not hold back a crisis reply.
        threading.Thread(target=self._email, args=(urgent, inbound_id), daemon=True,
                         name=f"notice-{inbound_id}").start()

    def _email(self, urgent: bool, inbound_id: int) -> None:
        now = self.clock.now()
        subject = "URGENT: a patient reply is waiting in dripcare" if urgent else \
            "A patient reply is waiting in dripcare"
        body = (f"{'An URGENT reply (words of crisis)' if urgent else 'A reply'} is waiting in the dripcare "
                f"inbox (id {inbound_id}).\nRead it with: dripcare inbox{' --urgent' if urgent else ''}\n\n"
                "The text is not in this email: patients' words stay in the dripcare database.\n")
        # A Message-ID of its own ("dripcare-inbox-N"), apart from patient emails' ids.
        notice = Outgoing(message_id=f"inbox-{inbound_id}", channel="email", to=self.to, body=body,
                          subject=subject, expires_at=now + timedelta(hours=1), now=now)
        try:
            self.transport.send(notice)
        except TransportError as error:
            log.error("could not email the clinic about inbound %s: %s", inbound_id, error.code)
        except Exception:
            log.exception("could not email the clinic about inbound %s", inbound_id)


def clinic_notice(settings: Settings, rt: Runtime) -> ClinicNotice:
    transport = None
    if settings.email_transport == "smtp":
        from dripcare.delivery.transports.smtp_email import SmtpEmail

        transport = SmtpEmail(**settings.smtp())
    return ClinicNotice(rt.clinic.notify_email, transport, rt.clock)


# --- The app --------------------------------------------------------------------------

def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """gunicorn calls this with no arguments: the process's settings, logging and clock."""
    entry_point = settings is None
    settings = settings or Settings()
    if entry_point:
        logs.configure(settings.log_format)
    if settings.now_spec:
        log.warning("DRIPCARE_NOW=%s: running on a simulated clock", settings.now_spec)
    rt = runtime or build_runtime(settings)
    token = settings.twilio_auth_token("the web process needs it to check Twilio signatures")
    web = WebHooks(rt, rt.templates, RequestValidator(token), public_base_url(settings),
                   settings.unsubscribe_keys(), clinic_notice(settings, rt), settings.dispatch_interval)
    app = Flask(__name__)
    app.add_url_rule("/twilio/status", "twilio_status", web.status_callback, methods=["POST"])
    app.add_url_rule("/twilio/inbound", "twilio_inbound", web.inbound, methods=["POST"])
    app.add_url_rule("/u/<token>", "unsubscribe_page", web.unsubscribe_page, methods=["GET"])
    app.add_url_rule("/u/<token>", "unsubscribe", web.unsubscribe, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", web.healthz, methods=["GET"])
    app.add_url_rule("/healthz/worker", "healthz_worker", web.healthz_worker, methods=["GET"])
    app.extensions["dripcare"] = web
    return app


class WebHooks:
    def __init__(self, rt: Runtime, templates: Templates, validator: RequestValidator, base_url: str,
                 keys: list[str], notice: ClinicNotice, dispatch_interval: float):
        self.rt, self.templates, self.validator, self.base_url = rt, templates, validator, base_url
        self.keys, self.notice, self.dispatch_interval = keys, notice, dispatch_interval

    # -- signatures ----------------------------------------------------------------

    def _signed(self) -> bool:
        """Checked against the URL Twilio called (public base + path + query), not the one
        this process sees behind a proxy."""
        signature = request.headers.get("X-Twilio-Signature", "")
        query = request.query_string.decode("latin-1")
        url = self.base_url + request.path + (f"?{query}" if query else "")
        return bool(signature) and self.validator.validate(url, request.form, signature)

    def _refuse(self) -> Response:
        log.warning("refused %s: %s X-Twilio-Signature (From %s, MessageSid %s)", request.path,
                    "wrong" if request.headers.get("X-Twilio-Signature") else "missing",
                    mask_contact(request.form.get("From", "")) or "-", request.form.get("MessageSid", "-")[:40])
        return Response("forbidden\n", status=403, mimetype="text/plain")

    # -- POST /twilio/status -------------------------------------------------------------

    def status_callback(self) -> Response:
        if not self._signed():
            return self._refuse()
        form = request.form
        status = (form.get("MessageStatus") or "").strip().lower()
        sid = (form.get("MessageSid") or "").strip() or None
        code = (form.get("ErrorCode") or "").strip() or None
        with transaction(self.rt.engine) as session:
            m = self._callback_row(session, request.args.get("m", ""), sid)
            if m is None:
                log.info("status callback %s for an unknown message (%s)", status or "-", sid or "no SID")
            elif status in CALLBACK_TO:
                self._settle(session, m, status, sid, code)
            elif status in ACCEPTED_STATUSES and m.status == "unconfirmed":
                self._confirm(session, m, sid)
        return Response(status=204)

    def _callback_row(self, session: Session, m: str, sid: str | None) -> Message | None:
        """By `m` (it finds the row even before the SID is stored), else by SID. A row
        that already holds another SID belongs to another attempt: not this callback's."""
        row = session.get(Message, int(m)) if m.isascii() and m.isdigit() and len(m) < 19 else None
        if row is None and sid:
            row = session.execute(sa.select(Message).where(Message.provider_id == sid)).scalars().first()
        if row is None or row.channel != "sms":
            return None
        if sid and row.provider_id and row.provider_id != sid:
            log.info("status callback for message %s names %s, not its SID %s: ignored", row.id, sid, row.provider_id)
            return None
        return row

    def _settle(self, session: Session, m: Message, status: str, sid: str | None, code: str | None) -> None:
        now = self.rt.clock.now()
        if not outbox.settle(session, m, status, code, sid, now):
            return  # a repeat, or the row is already final: never backwards
        log.info("message %s %s%s", m.id, status, f" (twilio:{code})" if code else "")
        if status != S.DELIVERED and code:
            Outcomes(self.rt).after_callback(session, m, code, now)

    def _confirm(self, session: Session, m: Message, sid: str | None) -> None:
        """An ambiguous send that Twilio reports it took: `sent`, so it is never sent twice."""
        if not (sid or m.provider_id):
            return
        now = self.rt.clock.now()
        outbox.confirm(session, m.id, m.provider_id or sid, now, detail=f"callback {sid}", by="twilio")

    # -- POST /twilio/inbound ------------------------------------------------------------

    def inbound(self) -> Response:
        if not self._signed():
            return self._refuse()
        sender = (request.form.get("From") or "").strip()
        text = request.form.get("Body") or ""
        sid = (request.form.get("MessageSid") or "").strip() or None
        taken_as = replies.classify(text)
        stored = self._store_inbound(sender, text, sid, taken_as)
        if stored is None:
            log.info("inbound %s from %s already handled", sid, mask_contact(sender))
            return self._twiml(None)
        inbound_ids, patient_ids = stored
        log.info("inbound from %s taken as %s (ids %s, %d patient(s))", mask_contact(sender), taken_as,
                 ",".join(map(str, inbound_ids)), len(patient_ids))
        if taken_as in ("opt_out", "opt_in"):
            self._change_consent(patient_ids, taken_as == "opt_in", text)
        elif taken_as in ("crisis", "reply"):
            self.notice.notify_clinic(taken_as == "crisis", inbound_ids[0])
        return self._twiml(self._reply_text(taken_as))

    def _store_inbound(self, sender: str, text: str, sid: str | None,
                       taken_as: str) -> tuple[list[int], list[int]] | None:
        """One row per patient with that number (one without a patient when none has it);
        None when this MessageSid was handled before (Twilio may deliver twice)."""
        now = self.rt.clock.now()
        with transaction(self.rt.engine) as session:
            if sid and session.execute(sa.select(InboundMessage.id).where(InboundMessage.provider_sid == sid)).first():
                return None
            patient_ids = session.execute(sa.select(Patient.id).where(Patient.phone == sender)
                                          .order_by(Patient.id)).scalars().all() if sender else []
            rows = [InboundMessage(patient_id=pid, from_number=sender, body=text, received_at=now,
                                   taken_as=taken_as, urgent=taken_as == "crisis", provider_sid=sid)
                    for pid in (patient_ids or [None])]
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows], list(patient_ids)

    def _change_consent(self, patient_ids: list[int], granted: bool, text: str) -> None:
        """STOP or START for every patient with that number, each in its own transaction
        (consent and replan together), skipping those already where the patient asks."""
        for patient_id in patient_ids:
            with Session(self.rt.engine) as session:
                patient = session.get(Patient, patient_id)
                if consent_in_force(session, patient)["sms"] == granted:
                    continue
            try:
                set_consent(self.rt, str(patient_id), "sms", granted, source="sms_keyword", by="sms",
                            evidence=text[:500])
            except Exception:
                log.exception("patient %s: could not record the SMS %s", patient_id,
                              "opt-in" if granted else "opt-out")

    def _reply_text(self, taken_as: str) -> str | None:
        clinic = self.rt.clinic
        if taken_as in KEYWORD_REPLIES and not clinic.keyword_replies:
            return None  # Twilio Advanced Opt-Out answers keywords itself
        source = getattr(clinic, KEYWORD_REPLIES.get(taken_as, "unmonitored_reply"))
        try:
            text = self.templates.render_text(source, {})
        except TemplateError as error:
            log.error("clinic.toml reply for %s cannot be rendered: %s", taken_as, error)
            if taken_as in KEYWORD_REPLIES:
                return None
            text = f"{clinic.sms_name}: this number is not monitored. Call {clinic.phone}."
        if taken_as == "crisis" and clinic.crisis_line not in text:
            # Whatever the clinic wrote, a patient in crisis is given the crisis line.
            text += f" In crisis, call or text {clinic.crisis_line}."
        return text

    def _twiml(self, text: str | None) -> Response:
        response = MessagingResponse()
        if text:
            response.message(text)
        return Response(str(response), mimetype="text/xml")

    # -- /u/<token> -------------------------------------------------------------------

    def _token_patient(self, token: str) -> Patient | None:
        patient_id = read_token(token, self.keys)
        if patient_id is None:
            return None
        with Session(self.rt.engine) as session:
            return session.get(Patient, patient_id)

    def unsubscribe_page(self, token: str) -> Response:
        """Link scanners fetch GETs: this only says what the button will do."""
        if self._token_patient(token) is None:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", status=404)
        name = html.escape(self.rt.clinic.sms_name)
        form = (f'<form method="post" action="{html.escape(request.path)}">'
                '<button type="submit">Unsubscribe from emails</button></form>')
        return _page("Unsubscribe", f"<p>Press the button to stop care emails from {name} to this "
                     f"address. Text messages are not affected.</p>{form}")

    def unsubscribe(self, token: str) -> Response:
        """RFC 8058 one-click (body `List-Unsubscribe=One-Click`) and the page's form alike."""
        patient = self._token_patient(token)
        if patient is None:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", status=404)
        with Session(self.rt.engine) as session:
            in_force = consent_in_force(session, patient)["email"]
        if in_force:
            set_consent(self.rt, str(patient.id), "email", False, source="email_unsubscribe", by="email",
                        evidence="one-click unsubscribe")
            log.info("patient %s unsubscribed from email", patient.id)
        name = html.escape(self.rt.clinic.sms_name)
        return _page("Unsubscribed", f"<p>You will get no more care emails from {name} at this address.</p>")

    # -- health --------------------------------------------------------------------------

    def _heartbeat(self) -> tuple[float | None, list[str]]:
        now = self.rt.clock.now()
        with Session(self.rt.engine) as session:
            session.execute(sa.text("SELECT 1"))
            age = youngest_heartbeat_age(session, now)
            return age, sorted(channels.paused_channels(session, now))

    def healthz(self):
        """200 whenever the database answers, whatever the worker: a platform restarting
        the web process on this must never stop STOP handling because a worker is down."""
        try:
            age, paused = self._heartbeat()
        except Exception as error:
            log.warning("healthz: database not answering: %s", type(error).__name__)
            return jsonify(database="unavailable"), 503
        return jsonify(database="ok", worker_heartbeat_age_seconds=_rounded(age), paused_channels=paused), 200

    def healthz_worker(self):
        limit = HEARTBEATS_ALLOWED * self.dispatch_interval
        try:
            age, _ = self._heartbeat()
        except Exception as error:
            log.warning("healthz/worker: database not answering: %s", type(error).__name__)
            return jsonify(database="unavailable", worker="unknown"), 503
        fresh = age is not None and age < limit
        body = {"worker": "ok" if fresh else ("none" if age is None else "stale"),
                "worker_heartbeat_age_seconds": _rounded(age), "limit_seconds": limit}
        return jsonify(body), 200 if fresh else 503


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 1)


def _page(title: str, content: str, status: int = 200) -> Response:
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
                f"<title>{title}</title></head><body><h1>{title}</h1>{content}</body></html>")
    return Response(document, status=status, mimetype="text/html")
