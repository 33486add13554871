"""One dispatch pass (SPEC 7): resolve what is in doubt, then, per channel, claim -> wait
for the send slot -> check on fresh data -> render -> store the attempt -> send -> record.

The check is made at the moment of sending: a group of rows is judged only once the
pacer has given it its slots, within `LEAD` seconds of the first of them, on data read
then (the row, the patient, consent, the enrollment, the sessions), against the instant
each message will actually leave. A STOP, a withdrawal or a new number that lands while
a row waits for its slot is seen. Claims stay small: one dispatch interval at this
worker's share of the rate.

No transaction is open while a provider is called. Each group is read in a handful of
statements and its attempts stored in one transaction; the answers of many sends are
recorded together. Every write is a conditional update on the state it expects.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlmodel import Session

from dripcare.delivery.rate import Pacer
from dripcare.delivery.templates import PatientFacts, SessionFacts, TemplateError, build_context
from dripcare.delivery.transports.base import Outgoing, Transport, TransportError
from dripcare.domain import retry
from dripcare.domain.contacts import contact_for, reachable
from dripcare.domain.eligibility import stop_reason
from dripcare.domain.planner import EnrollmentState, PatientState, SessionState, standing
from dripcare.domain.privacy import mask_contact
from dripcare.domain.statuses import COUNTED_SESSIONS, MessageStatus as S
from dripcare.domain.timing import local_day, resolve_wall, zone
from dripcare.domain.unsubscribe import unsubscribe_url
from dripcare.store import channels, outbox, sending
from dripcare.store.db import transaction
from dripcare.store.models import Message

log = logging.getLogger("dripcare.dispatch")
UNCONFIRMED_GRACE = timedelta(minutes=10)
TEMPLATE_RETRY = timedelta(minutes=10)
COUNTED_AS = {"retry": "template_error"}  # a pass counts a held-back row by its kind; a retried template as its error
LEAD = 0.2  # at most this long before its first slot a group is checked: within a second of every send
FIRST_LEAD = 0.05  # what checking a group is assumed to take, until a lane has timed one
GROUP_MAX = 500  # rows judged and stored together when the rate leaves room for that many
SEND_WINDOW = 0.5  # a group's sends all start within this long of its check, at the provider's pace
FIRST_SEND_TIME = 0.1  # what one send is assumed to take, until a lane has timed some
# Expiry and quiet hours are judged a second past the slot: the request must reach the
# provider before the moment ends, not merely leave here before it.
ON_THE_WAY = timedelta(seconds=1)


class ProviderOutcomes(Protocol):
    """What a provider's answer changes beyond the row (the contact, consent, the channel):
    one owner for answers when sending and in status callbacks (`app.outcomes`)."""

    def after_refusal(self, session: Session, m: Message, kind: str, code: str, detail: str,
                      now: datetime) -> None: ...


@dataclass
class DispatchOptions:
    worker_id: str
    batch: int = 200
    concurrency: int = 8
    interval: float = 15.0
    public_base_url: str | None = None
    secret_key: str | None = None


@dataclass(frozen=True)
class Judged:
    """A row that may go now: what to store and send."""

    attempt: outbox.Attempt
    outgoing: Outgoing
    slot: float


class Dispatcher:
    def __init__(self, rt, transports: dict[str, Transport], rates: dict[str, Pacer],
                 options: DispatchOptions, outcomes: ProviderOutcomes,
                 workers: Callable[[], int] = lambda: 1):
        self.rt, self.transports, self.rates, self.options = rt, transports, rates, options
        self.outcomes, self.workers = outcomes, workers
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="send")
        self._slots = threading.BoundedSemaphore(options.concurrency)
        self._answers = _Answers(self)
        self._lead: dict[str, float] = {}
        self._send_time: dict[str, float] = {}

    @property
    def templates(self):
        return self.rt.templates

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- the pass -------------------------------------------------------------

    def run_pass(self) -> Counter:
        """Resolve doubtful rows, then send what is due, every channel side by side."""
        summary: Counter = Counter()
        self.resolve_in_doubt(summary)
        share = max(1, self.workers())
        # Each lane counts on its own (a Counter is not safe across threads); summed at the end.
        counts = {channel: Counter() for channel in self.rates}
        failures: list[Exception] = []
        lanes = [threading.Thread(target=self._lane, args=(channel, share, counts[channel], failures),
                                  name=f"lane-{channel}") for channel in self.rates]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        self._answers.flush(summary, wait=True)
        for lane_counts in counts.values():
            summary.update(lane_counts)
        if failures:  # claimed rows left behind are recovered when their lease runs out
            raise failures[0]
        return summary

    def claim_size(self, channel: str, share: int) -> int:
        """One dispatch interval at this worker's share of the rate, so a claimed row waits
        seconds for its slot, not minutes (and never near its 5-minute lease)."""
        per_second = self.rates[channel].per_second / share
        horizon = min(self.options.interval, outbox.LEASE.total_seconds() / 4)
        return max(1, min(self.options.batch, math.ceil(per_second * horizon)))

    def _group_size(self, channel: str, pacer: Pacer) -> int:
        """Rows judged together: as many as the pacer releases within LEAD (one at 1/s) and
        the send threads can start within SEND_WINDOW at the provider's pace (a slow
        provider gets small groups, so no row waits long after its check), at most GROUP_MAX."""
        by_provider = self.options.concurrency * SEND_WINDOW / self._send_time.get(channel, FIRST_SEND_TIME)
        return max(1, min(GROUP_MAX, self.options.batch, math.floor(LEAD * pacer.per_second), math.floor(by_provider)))

    def _lane(self, channel: str, share: int, summary: Counter, failures: list) -> None:
        try:
            self._run_lane(channel, share, summary)
        except Exception as error:  # handed to run_pass's caller: the worker says it once a minute
            failures.append(error)

    def _run_lane(self, channel: str, share: int, summary: Counter) -> None:
        pacer, queue, exhausted = self.rates[channel], deque(), False
        self._lead[channel] = FIRST_LEAD
        while not self.stopping.is_set():
            size = self._group_size(channel, pacer)
            if len(queue) < size and not exhausted:
                if self._paused(channel):
                    break
                # Claimed while the previous group is still going out: the send slots stay fed.
                claimed = outbox.claim_due(self.rt.engine, self.rt.clock.now(), self.claim_size(channel, share),
                                           self.options.worker_id, [channel])
                queue.extend(claimed)
                exhausted = not claimed
            if not queue:
                break
            if self._paused(channel):
                summary["released"] += self._release(list(queue))
                queue.clear()
                break
            self._send_group(channel, pacer, [queue.popleft() for _ in range(min(size, len(queue)))], summary)
            self._answers.flush(summary)
        if queue:  # stopping: claimed, never judged, never sent
            summary["released"] += self._release(list(queue))

    def _send_group(self, channel: str, pacer: Pacer, ids: list[int], summary: Counter) -> None:
        """Slots, then the check, then the sends, each handed in slot order to the next free
        send thread: a slow answer holds up one thread, never the slots of the next group.
        The first slot is at least as far off as checking the group takes, so the sends can
        leave on time."""
        lead = self._lead[channel]
        slots = pacer.reserve(len(ids), lead)
        if not pacer.wait_until(slots[0] - lead, self.stopping):
            summary["released"] += self._release(ids)
            return
        started = time.monotonic()
        ready = self._judge_group(ids, slots, pacer, summary)
        # The next group's lead: this check's time with room to spare, never past LEAD.
        self._lead[channel] = min(LEAD, max(0.005, 1.5 * (time.monotonic() - started)))
        going = {j.slot for j in ready}
        unused = len(slots) - next((i for i in range(len(slots), 0, -1) if slots[i - 1] in going), 0)
        pacer.give_back(slots[len(slots) - unused:])  # held or closed at the check: nothing went
        for judged in ready:
            self._slots.acquire()  # at most `concurrency` sends waiting for their slot or in flight
            self._pool.submit(self._send_one, judged, pacer)

    def _paused(self, channel: str) -> bool:
        with Session(self.rt.engine) as session:
            return channel in channels.paused_channels(session, self.rt.clock.now())

    def _release(self, ids: list[int]) -> int:
        if not ids:
            return 0
        with transaction(self.rt.engine) as session:
            return outbox.release(session, ids, self.rt.clock.now(), self.options.worker_id)

    # -- the check at the moment of sending -------------------------------------------------

    def _judge_group(self, ids: list[int], slots: list[float], pacer: Pacer, summary: Counter) -> list[Judged]:
        now, pacer_now = self.rt.clock.now(), pacer.now()
        speed = getattr(self.rt.clock, "speed", 1.0)
        # The instant each message will leave, on the clock the rules are judged by.
        leaving = [now + timedelta(seconds=max(0.0, slot - pacer_now) * speed) for slot in slots]
        ready: list[Judged] = []
        kept: list[outbox.KeptBack] = []
        with transaction(self.rt.engine) as session:
            group = _Group(session, ids, self.options.worker_id, leaving[-1])
            for message_id, slot, at in zip(ids, slots, leaving):
                facts = group.facts.get(message_id)
                if facts is None:
                    continue  # taken back meanwhile (a lease sweep): not this worker's to send
                verdict = self._judge(facts, at, group)
                if isinstance(verdict, Judged):
                    ready.append(Judged(verdict.attempt, verdict.outgoing, slot))
                else:
                    kept.append(verdict)
            outbox.keep_back(session, kept)
            stored = outbox.start_attempts(session, [j.attempt for j in ready], now)
        for verdict in kept:
            summary[COUNTED_AS.get(verdict.kind, verdict.kind)] += 1
        return [j for j in ready if j.attempt.message_id in stored]

    def _judge(self, f: sending.SendFacts, at: datetime, group: "_Group") -> "Judged | outbox.KeptBack":
        m, patient = f.message, f.patient
        arrives = at + ON_THE_WAY
        if arrives >= m.expires_at:
            return outbox.KeptBack(m.id, S.EXPIRED, "expired", at)
        reason = self._stop_reason(f)
        if reason:
            return outbox.KeptBack(m.id, S.CANCELLED, reason, at)
        tz = zone(patient.timezone)
        quiet = self.rt.clinic.quiet_hours
        if quiet.contains(at, tz) or quiet.contains(arrives, tz):
            end = quiet.period(arrives, tz)[1]
            if end < m.expires_at:
                return outbox.KeptBack(m.id, S.SCHEDULED, "quiet_hours", at, until=end)
            return outbox.KeptBack(m.id, S.EXPIRED, "quiet_hours", at)
        if group.sent_on(m, tz, at) >= self.rt.clinic.max_per_day[m.channel]:
            return self._over_cap(m, tz, at)
        try:
            judged = self._render(f, at, group)
        except TemplateError as error:
            log.warning("message %s: template error: %s", m.id, error)
            return self._template_retry(m, at, str(error))
        group.going(m, at, judged.attempt.footer)
        return judged

    def _stop_reason(self, f: sending.SendFacts) -> str | None:
        """SPEC 6's judgement on fresh data, the same function planning uses."""
        m, patient, e = f.message, f.patient, f.enrollment
        campaign = self.rt.campaigns.get(e.campaign_id)
        state = EnrollmentState(id=e.id, campaign=campaign, status=e.status, enrolled_at=e.enrolled_at,
                                completed=e.completed_at is not None,
                                sessions=tuple(SessionState(s.id, s.starts_at, s.status) for s in f.sessions))
        facts = PatientState(timezone=patient.timezone, reachable={m.channel: reachable(patient, m.channel)},
                             consented={m.channel: f.consented})
        if campaign is None and e.status not in ("withdrawn", "paused"):
            return None  # the campaign file is missing: its last good version is gone from this process
        return stop_reason(standing(m.step_id, m.session_id, m.anchor_at, m.channel, state, facts))

    def _over_cap(self, m: Message, tz, at: datetime) -> outbox.KeptBack:
        """Over the daily cap at send time: the next allowed time before expiry, else skipped."""
        midnight = resolve_wall(datetime.combine(local_day(at, tz) + timedelta(days=1), datetime.min.time()), tz)
        tomorrow = self.rt.clinic.quiet_hours.end_after(midnight, tz)
        if tomorrow < m.expires_at:
            return outbox.KeptBack(m.id, S.SCHEDULED, "daily_cap", at, until=tomorrow)
        return outbox.KeptBack(m.id, S.SKIPPED, "daily_cap", at)

    def _template_retry(self, m: Message, at: datetime, error: str) -> outbox.KeptBack:
        """Staff can fix a template: try again in a while, until the message expires."""
        when = at + TEMPLATE_RETRY
        if when >= m.expires_at:
            return outbox.KeptBack(m.id, S.EXPIRED, "template_error", at, detail=error[:300])
        return outbox.KeptBack(m.id, S.SCHEDULED, "template_error", at, until=when, error=error[:300])

    # -- rendering -----------------------------------------------------------------------

    def _render(self, f: sending.SendFacts, at: datetime, group: "_Group") -> Judged:
        m, patient = f.message, f.patient
        campaign = self.rt.campaigns.get(f.enrollment.campaign_id)
        if campaign is None:
            raise TemplateError(f"campaign {f.enrollment.campaign_id!r}: its file is missing from config/campaigns")
        counted = [s for s in f.sessions if s.status in COUNTED_SESSIONS]
        facts = [SessionFacts(starts_at=s.starts_at, number=n, count=len(counted), is_first=n == 1,
                              is_last=n == len(counted), modality=s.modality, location=s.location,
                              duration_minutes=s.duration_minutes) for n, s in enumerate(counted, 1)]
        current = next((fact for fact, s in zip(facts, counted) if s.id == m.session_id), None)
        context = build_context(
            patient=PatientFacts(first_name=patient.first_name, preferred_name=patient.preferred_name,
                                 locale=patient.locale, discreet=patient.discreet, timezone=patient.timezone),
            clinic=self.rt.clinic, campaign=campaign, session=current, sessions=facts, now=at)
        to = contact_for(patient, m.channel)
        if m.channel == "sms":
            footer = None if group.footer_given(f.enrollment) else self.rt.clinic.sms_text("footer", patient.locale)
            sms = self.templates.render_sms(campaign.id, m.step_id, patient.locale, context, footer=footer or None)
            if patient.discreet:
                named = self.rt.terms.found(sms.text)
                if named:
                    raise TemplateError(f"message {m.id}: a discreet SMS would name {named[0]!r}; not sent")
            attempt = outbox.Attempt(m.id, to, sms.text, None, None, bool(footer))
            return Judged(attempt, Outgoing(message_id=m.id, channel="sms", to=to, body=sms.text,
                                            expires_at=m.expires_at, now=at), 0.0)
        link = self._unsubscribe(m)
        email = self.templates.render_email(campaign.id, m.step_id, patient.locale, context, unsubscribe_url=link)
        attempt = outbox.Attempt(m.id, to, email.text, email.subject, email.html, False)
        return Judged(attempt, Outgoing(message_id=m.id, channel="email", to=to, body=email.text,
                                        expires_at=m.expires_at, now=at, subject=email.subject,
                                        html=email.html, unsubscribe_url=link), 0.0)

    def _unsubscribe(self, m: Message) -> str | None:
        if m.channel != "email" or not (self.options.public_base_url and self.options.secret_key):
            return None
        return unsubscribe_url(self.options.public_base_url, m.patient_id, self.options.secret_key)

    # -- send -----------------------------------------------------------------------------

    def _send_one(self, judged: Judged, pacer: Pacer) -> None:
        try:
            self._send(judged, pacer)
        finally:
            self._slots.release()

    def _send(self, judged: Judged, pacer: Pacer) -> None:
        out = judged.outgoing
        if not pacer.wait_until(judged.slot, self.stopping) or not pacer.may_start(judged.slot):
            # Stopping, or the slot was missed: a late send could crowd the next second.
            self._answers.put_back(out.message_id)
            return
        started = time.monotonic()
        try:
            provider_id = self.transports[out.channel].send(out)
        except TransportError as error:
            self._answers.refused(out, error)
        except Exception as error:  # a bug or an unexpected library error: the request may have left
            log.exception("message %s: unexpected error while sending", out.message_id)
            self._answers.refused(out, TransportError("ambiguous", type(error).__name__))
        else:
            self._answers.accepted(out, provider_id, self.rt.clock.now())
        finally:  # the provider's pace, for the size of the next groups (a rough average will do)
            took = time.monotonic() - started
            self._send_time[out.channel] = 0.8 * self._send_time.get(out.channel, took) + 0.2 * took

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
                outbox.confirm(session, m.id, found, now, detail=f"found {found}")
                return "confirmed"
            waited = m.attempted_at is None or m.channel == "email" or now - m.attempted_at >= UNCONFIRMED_GRACE
            if not waited:
                return "in_doubt"
            if now >= m.expires_at:
                outbox.close(session, m.id, S.EXPIRED, "expired", now, from_=(m.status,))
                return "expired"
            outbox.recover(session, m.id, m.status, now)
            return "recovered"


class _Group:
    """One group's fresh facts, and what the group itself has decided so far (two SMS of
    one patient in one group count against the same daily cap; one footer per enrollment)."""

    def __init__(self, session: Session, ids: list[int], worker_id: str, latest: datetime):
        self.facts = sending.load_group(session, ids, worker_id)
        patients = {f.patient.id for f in self.facts.values()}
        mine = set(ids)
        # Two local days back covers "today" in every zone, whatever the offset.
        self.went_out = sending.went_out_since(session, patients, latest - timedelta(days=2), mine)
        self.footers = sending.footers_given(session, list({f.enrollment.id: f.enrollment
                                                           for f in self.facts.values()}.values()), mine)

    def sent_on(self, m: Message, tz, at: datetime) -> int:
        day = local_day(at, tz)
        return sum(1 for when in self.went_out.get((m.patient_id, m.channel), ()) if local_day(when, tz) == day)

    def footer_given(self, enrollment) -> bool:
        return enrollment.id in self.footers

    def going(self, m: Message, at: datetime, footer: bool) -> None:
        self.went_out.setdefault((m.patient_id, m.channel), []).append(at)
        if footer:
            self.footers.add(m.enrollment_id)


class _Answers:
    """Providers' answers, recorded together: acceptances in one transaction per flush,
    refusals each with its consequences (SPEC 7 "Answers when sending")."""

    def __init__(self, dispatcher: Dispatcher):
        self.d = dispatcher
        self._lock = threading.Lock()
        self._sent: list[tuple[int, str, datetime, str]] = []
        self._refused: list[tuple[Outgoing, TransportError]] = []
        self._back: list[int] = []

    def accepted(self, out: Outgoing, provider_id: str, at: datetime) -> None:
        log.info("message %s sent by %s to %s", out.message_id, out.channel, mask_contact(out.to))
        with self._lock:
            self._sent.append((out.message_id, provider_id, at, out.channel))

    def refused(self, out: Outgoing, error: TransportError) -> None:
        log.warning("message %s to %s: %s answer %s", out.message_id, mask_contact(out.to), error.kind, error.code)
        with self._lock:
            self._refused.append((out, error))

    def put_back(self, message_id: int) -> None:
        with self._lock:
            self._back.append(message_id)

    def flush(self, summary: Counter, wait: bool = False) -> None:
        if wait:  # the pass ends when every send of it has answered: all send slots free
            for _ in range(self.d.options.concurrency):
                self.d._slots.acquire()
            self.d._slots.release(self.d.options.concurrency)
        with self._lock:
            sent, refused, back = self._sent, self._refused, self._back
            self._sent, self._refused, self._back = [], [], []
        if not (sent or refused or back):
            return
        try:
            with transaction(self.d.rt.engine) as session:
                summary["sent"] += outbox.mark_sent(session, [(i, p, at) for i, p, at, _ in sent])
                now = self.d.rt.clock.now()
                summary["released"] += outbox.release(session, back, now, self.d.options.worker_id,
                                                      undo_attempt=True)
        except Exception:
            self._keep(sent, [], back)  # the provider took them: the record is written on a later flush
            raise
        for n, (out, error) in enumerate(refused):
            try:
                with transaction(self.d.rt.engine) as session:
                    summary[self._refusal(session, out, error)] += 1
            except Exception:
                self._keep([], refused[n:], [])
                raise

    def _keep(self, sent: list, refused: list, back: list) -> None:
        """Answers not yet written (the database refused): kept, in front, for the next flush."""
        with self._lock:
            self._sent[:0], self._refused[:0], self._back[:0] = sent, refused, back

    def _refusal(self, session: Session, out: Outgoing, error: TransportError) -> str:
        now = self.d.rt.clock.now()
        m = session.get(Message, out.message_id)
        if m is None or m.status != S.SENDING:
            return "changed"
        if error.kind == "retryable":
            verdict, when = retry.next_attempt(m.attempts, now, m.expires_at)
            if verdict == "retry":
                outbox.retry_later(session, m.id, when, now, code=error.code)
                return "retried"
            if verdict == "failed":
                outbox.fail(session, m.id, error.code, now, reason="max_attempts")
                return "failed"
            outbox.close(session, m.id, S.EXPIRED, "expired", now, detail=error.code, error=error.code)
            return "expired"
        if error.kind == "ambiguous":
            outbox.mark_unconfirmed(session, m.id, error.code, now)
            return "unconfirmed"
        if error.kind == "account":
            outbox.release(session, [m.id], now, self.d.options.worker_id, undo_attempt=True)
            self.d.outcomes.after_refusal(session, m, error.kind, error.code, error.detail, now)
            return "paused"
        outbox.fail(session, m.id, error.code, now)
        self.d.outcomes.after_refusal(session, m, error.kind, error.code, error.detail, now)
        return "failed"

