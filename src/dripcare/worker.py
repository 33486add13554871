"""The long-running worker: APScheduler runs a few fixed jobs (dispatch, heartbeat,
sweep); the outbox table, not the scheduler, holds the messages (DESIGN)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from dripcare.store import outbox
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import ConfigError
from dripcare.store.db import transaction
from dripcare.config.logs import counts_text
from dripcare.delivery.dispatch import DispatchOptions, Dispatcher
from dripcare.store.models import CampaignFile, Worker
from dripcare.delivery.rate import SendRate
from dripcare.app.service import Runtime, replan
from dripcare.config.settings import Settings
from dripcare.delivery.templates import Templates
from dripcare.delivery.transports import build_transports

log = logging.getLogger("dripcare.worker")
SHUTDOWN_GRACE = 25.0
HEARTBEAT_EVERY = 10.0
SWEEP_EVERY = 30.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def build_dispatcher(rt: Runtime, settings: Settings, worker_id: str, *, transports=None,
                     rates: dict[str, SendRate] | None = None, console=None) -> Dispatcher:
    """The dispatcher every entry point uses: transports and rates from settings."""
    transports = transports or build_transports(settings, console=console)
    rates = rates or {"sms": SendRate(settings.sms_rate), "email": SendRate(settings.email_rate)}
    development = [f"{c}={t.name}" for c, t in transports.items() if t.development]
    options = DispatchOptions(worker_id=worker_id, batch=settings.dispatch_batch,
                              concurrency=settings.send_concurrency,
                              public_base_url=settings.public_base_url or (
                                  "http://localhost:8000" if development else None),
                              secret_key=settings.unsubscribe_keys()[0])
    return Dispatcher(rt, Templates(settings.messages_dir, rt.clinic), transports, rates, options)


def announce(settings: Settings, dispatcher: Dispatcher) -> None:
    """First log line: a development transport means nothing reaches patients."""
    development = [f"{c}={t.name}" for c, t in dispatcher.transports.items() if t.development]
    if development:
        log.warning("development transports (%s): nothing reaches patients", ", ".join(development))
    else:
        log.info("transports: %s", ", ".join(f"{c}={t.name}" for c, t in dispatcher.transports.items()))
    if settings.now_spec:
        log.warning("DRIPCARE_NOW=%s: running on a simulated clock", settings.now_spec)


class WorkerProcess:
    def __init__(self, rt: Runtime, settings: Settings, dispatcher: Dispatcher, worker_id: str):
        self.rt, self.settings, self.dispatcher, self.worker_id = rt, settings, dispatcher, worker_id
        self.idle = threading.Event()
        self.idle.set()
        self.busy = threading.Lock()  # one pass or sweep at a time touches rows in doubt
        self.scheduler = BlockingScheduler(timezone=timezone.utc, executors={"default": JobExecutor(4)})

    def dispatch_job(self) -> None:
        with self.busy:
            self.idle.clear()
            try:
                summary = self.dispatcher.run_pass()
                if +summary:
                    log.info("pass: %s", counts_text(summary))
            except Exception:
                log.exception("dispatch pass failed; the next pass tries again")
            finally:
                self.idle.set()

    def heartbeat_job(self) -> None:
        now = self.rt.clock.now()
        with transaction(self.rt.engine) as session:
            row = session.get(Worker, self.worker_id) or Worker(
                id=self.worker_id, hostname=socket.gethostname(), pid=os.getpid(), started_at=now, heartbeat_at=now)
            row.heartbeat_at = now
            session.add(row)

    def sweep_job(self) -> None:
        """Expired leases and unconfirmed sends are resolved even while passes find nothing
        due; changed campaign files are planned with (or the last good ones kept)."""
        if self.busy.acquire(blocking=False):  # a running pass resolves them itself
            try:
                summary = Counter()
                self.dispatcher.resolve_in_doubt(summary)
                if +summary:
                    log.info("sweep: %s", counts_text(summary))
            except Exception:
                log.exception("lease sweep failed")
            finally:
                self.busy.release()
        try:
            reload_campaigns(self.rt, self.settings)
        except Exception:
            log.exception("campaign sweep failed")

    def run(self) -> int:
        self.heartbeat_job()
        record_campaigns(self.rt, error=None)
        start = datetime.now(timezone.utc)
        interval = self.settings.dispatch_interval
        # max_instances=1 and coalesce: passes never overlap; misfire_grace_time=None: a
        # late pass still runs (a dropped pass would delay messages by a whole interval).
        self.scheduler.add_job(self.dispatch_job, "interval", seconds=interval, id="dispatch", next_run_time=start,
                               max_instances=1, coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(self.heartbeat_job, "interval", seconds=min(HEARTBEAT_EVERY, interval),
                               id="heartbeat", max_instances=1, coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(self.sweep_job, "interval", seconds=SWEEP_EVERY, id="sweep",
                               max_instances=1, coalesce=True, misfire_grace_time=None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        log.info("worker %s started: dispatch every %ss", self.worker_id, interval)
        self.scheduler.start()
        return self._finish()

    def _stop(self, signum, _frame) -> None:
        log.info("%s: claiming nothing more, finishing the sends in flight", signal.Signals(signum).name)
        self.dispatcher.stopping.set()
        self.scheduler.shutdown(wait=False)

    def _finish(self) -> int:
        if not self.idle.wait(SHUTDOWN_GRACE):
            log.warning("sends still in flight after %ss; their leases will be recovered", SHUTDOWN_GRACE)
        now = self.rt.clock.now()
        with transaction(self.rt.engine) as session:
            released = outbox.release_unattempted(session, self.worker_id, now)
            row = session.get(Worker, self.worker_id)
            if row is not None:
                row.stopped_at = now
                session.add(row)
        log.info("worker stopped; %d claimed-but-unsent messages put back", released)
        return 0


def record_campaigns(rt: Runtime, error: str | None, campaign_ids=None) -> None:
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        for c in rt.campaigns.values():
            if campaign_ids is not None and c.id not in campaign_ids:
                continue
            row = session.get(CampaignFile, c.id) or CampaignFile(campaign_id=c.id, digest=c.digest, loaded_at=now)
            row.digest, row.loaded_at, row.error = c.digest, now, error
            session.add(row)


def reload_campaigns(rt: Runtime, settings: Settings) -> bool:
    """True when the files changed and were planned with; a bad file keeps the last good version."""
    from dripcare.config.campaigns import campaign_files
    import hashlib

    current = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in campaign_files(settings.config_dir)}
    if current == {c.id: c.digest for c in rt.campaigns.values()}:
        return False
    try:
        campaigns = load_campaigns(settings.config_dir, rt.clinic, settings.messages_dir)
    except ConfigError as error:
        log.error("campaign files changed but are wrong; keeping the last good version: %s", error)
        record_campaigns(rt, error=str(error))
        return False
    rt.campaigns.clear()
    rt.campaigns.update(campaigns)
    record_campaigns(rt, error=None)
    changes = replan(rt, by="worker")
    log.info("campaign files changed; planned again: %s", dict(changes.counts))
    return True
