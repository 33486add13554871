"""One dispatch pass (SPEC 7): resolve what is in doubt, then claim -> check -> render ->
send (bounded pool, per-channel rate) -> record, until nothing is due.

No transaction is open while a provider is called: a row is claimed and its text stored
(commit), sent, and the answer recorded (commit). Every write is a conditional update.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store import channels, outbox
from dripcare.domain import retry
from dripcare.store.consent import consent_in_force, record_consent
from dripcare.store.db import transaction
from dripcare.store.models import Enrollment, Message, Patient, TreatmentSession
from dripcare.domain.planner import COUNTED_SESSIONS, WENT_OUT
from dripcare.delivery.rate import SendRate
from dripcare.app.service import Runtime
from dripcare.delivery.templates import PatientFacts, SessionFacts, TemplateError, Templates, build_context
from dripcare.domain.timing import resolve_wall, zone
from dripcare.delivery.transports.base import Outgoing, Transport, TransportError, mask_contact
from dripcare.domain.unsubscribe import unsubscribe_url

log = logging.getLogger("dripcare.delivery.dispatch")
UNCONFIRMED_GRACE = timedelta(minutes=10)
TEMPLATE_RETRY = timedelta(minutes=10)


@dataclass
class DispatchOptions:
    worker_id: str
    batch: int = 200
    concurrency: int = 8
    public_base_url: str | None = None
    secret_key: str | None = None


class Dispatcher:
    def __init__(self, rt: Runtime, templates: Templates, transports: dict[str, Transport],
                 rates: dict[str, SendRate], options: DispatchOptions):
        self.rt, self.templates, self.transports, self.rates = rt, templates, transports, rates
        self.options = options
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="send")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- the pass -------------------------------------------------------------

    def run_pass(self) -> Counter:
        """Resolve doubtful rows, then claim and send until nothing is due now."""
        summary: Counter = Counter()
        self.resolve_in_doubt(summary)
        while not self.stopping.is_set():
            now = self.rt.clock.now()
            ids = self._claim(now)
            if not ids:
                break
            # Each message goes to the pool as soon as it is checked and rendered, so sends
            # overlap with the preparation of the rest of the batch.
            sends = [self._pool.submit(self._deliver, out) for out in map(self._prepare, ids, repeat(summary))
                     if out is not None]
            for send in sends:
                summary[send.result()] += 1
        return summary

    def _claim(self, now: datetime) -> list[int]:
        with Session(self.rt.engine) as session:
            paused = channels.paused_channels(session, now)
        ids = []
        for channel, rate in self.rates.items():
            if channel in paused:
                continue
            # Never more than can go out in half a lease at this worker's rate.
            limit = max(1, min(self.options.batch, int(rate.burst / rate.window * outbox.LEASE.total_seconds() / 2)))
            ids += outbox.claim_due(self.rt.engine, now, limit, self.options.worker_id, [channel])
        return ids

    # -- check and render (before any provider call) ---------------------------

    def _prepare(self, message_id: int, summary: Counter) -> Outgoing | None:
        now = self.rt.clock.now()
        with transaction(self.rt.engine) as session:
            m = session.get(Message, message_id)
            patient = session.get(Patient, m.patient_id)
            enrollment = session.get(Enrollment, m.enrollment_id)
            closed = self._check(session, m, patient, enrollment, now)
            if closed:
                summary[closed] += 1
                return None
            try:
                rendered = self._render(session, m, patient, enrollment, now)
            except TemplateError as error:
                log.warning("message %s: template error: %s", m.id, error)
                summary[self._template_retry(session, m, now, str(error))] += 1
                return None
            to = patient.phone if m.channel == "sms" else patient.email
            outbox.transition(session, m.id, ("sending",), "sending", now, "attempt", to_contact=to,
                              attempts=m.attempts + 1, attempted_at=now, error=None, **rendered)
        return Outgoing(message_id=m.id, channel=m.channel, to=to, body=rendered["body"],
                        expires_at=m.expires_at, now=now, subject=rendered.get("subject"),
                        html=rendered.get("html"), unsubscribe_url=self._unsubscribe(m))

    def _close(self, session, m, status, reason, now) -> str:
        outbox.transition(session, m.id, ("sending",), status, now, status, reason=reason, lease_until=None)
        return status

    def _check(self, session: Session, m: Message, patient: Patient, enrollment: Enrollment,
               now: datetime) -> str | None:
        """Close or defer a row that must not go out now; None when it may."""
        if now >= m.expires_at:
            return self._close(session, m, "expired", "expired", now)
        reason = self._stop_reason(session, m, patient, enrollment)
        if reason:
            return self._close(session, m, "cancelled", reason, now)
        tz = zone(patient.timezone)
        quiet = self.rt.clinic.quiet_hours
        if quiet.contains(now, tz):
            end = quiet.period(now, tz)[1]
            if end < m.expires_at:
                return self._defer(session, m, now, end, "quiet_hours")
            return self._close(session, m, "expired", "quiet_hours", now)
        if self._sent_today(session, m, tz, now) >= self.rt.clinic.max_per_day[m.channel]:
            tomorrow = quiet.end_after(resolve_wall(
                datetime.combine(now.astimezone(tz).date() + timedelta(days=1), datetime.min.time()), tz), tz)
            if tomorrow < m.expires_at:
                return self._defer(session, m, now, tomorrow, "daily_cap")
            return self._close(session, m, "skipped", "daily_cap", now)
        return None

    def _stop_reason(self, session, m: Message, patient: Patient, enrollment: Enrollment) -> str | None:
        if not consent_in_force(session, patient)[m.channel]:
            return "opted_out"
        contact = patient.phone if m.channel == "sms" else patient.email
        if not contact or (patient.phone_invalid if m.channel == "sms" else patient.email_invalid):
            return "contact_invalid"
        if enrollment.status in ("withdrawn", "paused"):
            return enrollment.status
        campaign = self.rt.campaigns.get(enrollment.campaign_id)
        if campaign is None or campaign.step(m.step_id) is None:
            return "step_removed"
        if m.session_id is not None:
            sess = session.get(TreatmentSession, m.session_id)
            if sess.status in ("cancelled", "no_show"):
                return "session_cancelled" if sess.status == "cancelled" else "no_show"
            if sess.starts_at != m.anchor_at and campaign.step(m.step_id).anchor == "each_session":
                return "rescheduled"
        return None

    def _sent_today(self, session, m: Message, tz, now: datetime) -> int:
        """What went out on this channel on the patient's local day (daily cap, again at send time)."""
        day = now.astimezone(tz).date()
        start, end = (resolve_wall(datetime.combine(d, datetime.min.time()), tz) for d in (day, day + timedelta(days=1)))
        when = sa.func.coalesce(Message.sent_at, Message.attempted_at)
        return session.execute(sa.select(sa.func.count()).select_from(Message).where(
            Message.patient_id == m.patient_id, Message.channel == m.channel, Message.id != m.id,
            Message.status.in_(WENT_OUT), when >= start, when < end)).scalar()

    def _defer(self, session, m: Message, now: datetime, until: datetime, reason: str) -> str:
        outbox.transition(session, m.id, ("sending",), "scheduled", now, "deferred", reason=reason,
                          detail=until.isoformat(), next_attempt_at=until, lease_until=None)
        return "deferred"

    def _template_retry(self, session, m: Message, now: datetime, error: str) -> str:
        """Staff can fix a template: try again in a while, until the message expires."""
        when = now + TEMPLATE_RETRY
        if when >= m.expires_at:
            return self._close(session, m, "expired", "template_error", now)
        outbox.transition(session, m.id, ("sending",), "scheduled", now, "retry", reason="template_error",
                          detail=error[:300], error=error[:300], next_attempt_at=when, lease_until=None)
        return "template_error"

    def _retry_later(self, session, m: Message, now: datetime, code: str) -> str:
        """A retryable answer: back off (2, 10, 30, 60 min), never past expiry, at most 5 attempts."""
        verdict, when = retry.next_attempt(m.attempts, now, m.expires_at)
        if verdict == "retry":
            outbox.transition(session, m.id, ("sending",), "scheduled", now, "retry", detail=code,
                              error=code, next_attempt_at=when, lease_until=None)
            return "retried"
        status, why = ("failed", "max_attempts") if verdict == "failed" else ("expired", "expired")
        outbox.transition(session, m.id, ("sending",), status, now, status, reason=why, detail=code,
                          error=code, lease_until=None)
        return status

    def _render(self, session, m: Message, patient: Patient, enrollment: Enrollment, now: datetime) -> dict:
        campaign = self.rt.campaigns[enrollment.campaign_id]
        sessions = session.execute(sa.select(TreatmentSession).where(
            TreatmentSession.enrollment_id == enrollment.id, TreatmentSession.status.in_(COUNTED_SESSIONS))
            .order_by(TreatmentSession.starts_at)).scalars().all()
        facts = [SessionFacts(starts_at=s.starts_at, number=n, count=len(sessions), is_first=n == 1,
                              is_last=n == len(sessions), modality=s.modality, location=s.location,
                              duration_minutes=s.duration_minutes) for n, s in enumerate(sessions, 1)]
        current = next((f for f, s in zip(facts, sessions) if s.id == m.session_id), None)
        context = build_context(
            patient=PatientFacts(first_name=patient.first_name, preferred_name=patient.preferred_name,
                                 locale=patient.locale, discreet=patient.discreet, timezone=patient.timezone),
            clinic=self.rt.clinic, campaign=campaign, session=current, sessions=facts, now=now)
        if m.channel == "sms":
            footer = self.rt.clinic.sms_footer if self._footer_owed(session, m, enrollment) else None
            sms = self.templates.render_sms(campaign.id, m.step_id, patient.locale, context, footer=footer)
            return {"body": sms.text, "footer": footer is not None, "subject": None, "html": None}
        email = self.templates.render_email(campaign.id, m.step_id, patient.locale, context,
                                            unsubscribe_url=self._unsubscribe(m))
        return {"body": email.text, "subject": email.subject, "html": email.html, "footer": False}

    def _footer_owed(self, session, m: Message, enrollment: Enrollment) -> bool:
        """The footer goes on the first SMS that goes out in the enrollment, and again after START."""
        given = session.execute(sa.select(sa.func.count()).select_from(Message).where(
            Message.enrollment_id == enrollment.id, Message.channel == "sms", Message.footer.is_(True),
            Message.id != m.id, Message.status.in_(WENT_OUT), Message.attempted_at >= enrollment.footer_since)).scalar()
        return given == 0

    def _unsubscribe(self, m: Message) -> str | None:
        if m.channel != "email" or not (self.options.public_base_url and self.options.secret_key):
            return None
        return unsubscribe_url(self.options.public_base_url, m.patient_id, self.options.secret_key)

    # -- send and record --------------------------------------------------------

    def _deliver(self, out: Outgoing) -> str:
        if self.stopping.is_set() or self._paused(out.channel):
            return self._put_back(out)
        self.rates[out.channel].acquire()
        try:
            provider_id = self.transports[out.channel].send(out)
        except TransportError as error:
            return self._record_error(out, error)
        except Exception as error:  # a bug or an unexpected library error: the request may have left
            log.exception("message %s: unexpected error while sending", out.message_id)
            return self._record_error(out, TransportError("ambiguous", type(error).__name__))
        now = self.rt.clock.now()
        with transaction(self.rt.engine) as session:
            outbox.transition(session, out.message_id, ("sending",), "sent", now, "sent", detail=provider_id,
                              provider_id=provider_id, sent_at=now, lease_until=None)
        log.info("message %s sent by %s to %s", out.message_id, out.channel, mask_contact(out.to))
        return "sent"

    def _paused(self, channel: str) -> bool:
        with Session(self.rt.engine) as session:
            return channel in channels.paused_channels(session, self.rt.clock.now())

    def _put_back(self, out: Outgoing) -> str:
        with transaction(self.rt.engine) as session:
            outbox.transition(session, out.message_id, ("sending",), "scheduled", self.rt.clock.now(), "released",
                              detail=self.options.worker_id, lease_until=None, claimed_by=None,
                              attempted_at=None, attempts=outbox.message.c.attempts - 1)
        return "released"

    def _record_error(self, out: Outgoing, error: TransportError) -> str:
        now = self.rt.clock.now()
        log.warning("message %s to %s: %s answer %s", out.message_id, mask_contact(out.to), error.kind, error.code)
        with transaction(self.rt.engine) as session:
            m = session.get(Message, out.message_id)
            if error.kind == "retryable":
                return self._retry_later(session, m, now, error.code)
            if error.kind == "ambiguous":
                outbox.transition(session, m.id, ("sending",), "unconfirmed", now, "unconfirmed",
                                  detail=error.code, error=error.code, lease_until=None)
                return "unconfirmed"
            if error.kind == "account":
                channels.pause(session, m.channel, f"{error.code}: {error.detail}"[:200], now, now + channels.AUTO_RESUME)
                outbox.transition(session, m.id, ("sending",), "scheduled", now, "released", detail=error.code,
                                  lease_until=None, attempts=m.attempts - 1, attempted_at=None)
                return "paused"
            self._close_failed(session, m, now, error.code, error.code)
            patient = session.get(Patient, m.patient_id)
            if error.kind == "permanent":
                flag_contact_invalid(session, patient, m.channel)
            elif error.kind == "opted_out":
                record_consent(session, patient, m.channel, False, now, "carrier", "carrier", error.code)
            self.rt.replan(session, patient, "dispatch")
            return "failed"

    def _close_failed(self, session, m: Message, now: datetime, reason: str, code: str) -> str:
        outbox.transition(session, m.id, ("sending",), "failed", now, "failed", reason=reason, detail=code,
                          error=code, lease_until=None)
        return "failed"

    # -- rows in doubt ----------------------------------------------------------

    def resolve_in_doubt(self, summary: Counter) -> None:
        """`unconfirmed` rows and expired leases: never a blind resend (SPEC 7)."""
        now = self.rt.clock.now()
        with Session(self.rt.engine) as session:
            rows = outbox.needing_resolution(session, now)
        for m in rows:
            summary[self._resolve(m, now)] += 1

    def _resolve(self, m: Message, now: datetime) -> str:
        found = None
        if m.attempted_at is not None and m.channel in self.transports:
            out = Outgoing(message_id=m.id, channel=m.channel, to=m.to_contact or "", body=m.body or "",
                           expires_at=m.expires_at, now=now, subject=m.subject, html=m.html)
            try:
                found = self.transports[m.channel].lookup(out, m.attempted_at - timedelta(minutes=1))
            except TransportError as error:
                log.warning("message %s: lookup failed (%s); will try again", m.id, error.code)
                return "in_doubt"
        with transaction(self.rt.engine) as session:
            if found:
                outbox.transition(session, m.id, (m.status,), "sent", now, "sent", detail=f"found {found}",
                                  provider_id=found, sent_at=now, lease_until=None)
                return "confirmed"
            waited = m.attempted_at is None or m.channel == "email" or now - m.attempted_at >= UNCONFIRMED_GRACE
            if not waited:
                return "in_doubt"
            if now >= m.expires_at:
                outbox.transition(session, m.id, (m.status,), "expired", now, "expired", reason="expired",
                                  lease_until=None)
                return "expired"
            outbox.transition(session, m.id, (m.status,), "scheduled", now, "recovered", lease_until=None,
                              claimed_by=None, next_attempt_at=None)
            return "recovered"


def flag_contact_invalid(session: Session, patient: Patient, channel: str) -> None:
    """The provider says this contact can never receive: flagged until staff change it."""
    if channel == "sms":
        patient.phone_invalid = True
    else:
        patient.email_invalid = True
    session.add(patient)
    session.flush()
