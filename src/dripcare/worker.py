"""The long-running worker: APScheduler runs a few fixed jobs (dispatch, heartbeat, sweep);
the outbox table, not the scheduler, holds the messages (DESIGN).

A database that refuses writes (read-only, disk full, locked) stops no job for good: each
job is tried again on its schedule, the trouble is logged once a minute (`DatabaseWatch`),
and nothing is lost, because a row only moves when its write succeeds."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from dripcare.app import workers
from dripcare.app.config_watch import ConfigWatch
from dripcare.app.runtime import Runtime, build_dispatcher
from dripcare.config.logs import counts_text
from dripcare.config.settings import DEVELOPMENT_TRANSPORTS, Settings

log = logging.getLogger("dripcare.worker")
SHUTDOWN_GRACE = 25.0
HEARTBEAT_EVERY = 10.0
SWEEP_EVERY = 30.0
new_worker_id = workers.new_worker_id

__all__ = ["WorkerProcess", "announce", "build_dispatcher", "guard_fatal_signals", "new_worker_id"]


def guard_fatal_signals() -> None:
    """A fatal signal (SIGBUS from a blocked SQLite -shm file) is written to stderr, with
    every thread's stack, before the process dies: a worker never disappears without a word."""
    faulthandler.enable(file=sys.stderr, all_threads=True)


def announce(settings: Settings) -> None:
    """The first log lines, all true, written before the database is touched (a worker that
    dies on a broken database file has said what it was using): each channel's transport,
    the clock, the database (password masked), the rate."""
    routes = {"sms": settings.sms_transport, "email": settings.email_transport}
    shown = ", ".join(f"{c}={t}" for c, t in routes.items())
    development = [c for c, t in routes.items() if t in DEVELOPMENT_TRANSPORTS]
    if len(development) == len(routes):
        log.warning("transports %s: development only, nothing reaches patients", shown)
    elif development:
        log.warning("transports %s: %s development only, its messages reach no patient", shown,
                    " and ".join(development))
    else:
        log.info("transports %s: messages reach patients", shown)
    if settings.now_spec:
        log.warning("clock: %s", settings.clock_shown())
    else:
        log.info("clock: %s", settings.clock_shown())
    shared = settings.database_url.startswith("postgresql")
    log.info("database: %s (%s)", settings.database_shown(),
             "workers share it and the send rate" if shared else "SQLite: this worker alone")
    log.info("send rate for the whole deployment: sms %g/s, email %g/s%s", settings.sms_rate, settings.email_rate,
             ", shared by every worker" if shared else "")


class WorkerProcess:
    def __init__(self, rt: Runtime, settings: Settings, dispatcher, worker_id: str):
        self.rt, self.settings, self.dispatcher, self.worker_id = rt, settings, dispatcher, worker_id
        self.watch = ConfigWatch(rt, settings.config_dir, settings.messages_dir)
        self.database = workers.DatabaseWatch(log)
        self.idle = threading.Event()
        self.idle.set()
        self.busy = threading.Lock()  # one pass or sweep at a time touches rows in doubt
        self.scheduler = BlockingScheduler(timezone=timezone.utc, executors={"default": JobExecutor(4)})
        self._files_taken = False

    def _try(self, what: str, work: Callable[[], object], *, a_write: bool = False) -> bool:
        """Run one piece of a job; a failure is told (once a minute) and tried again next time.
        Only a piece that surely writes (the heartbeat) proves the database takes writes again:
        a sweep that found nothing to change commits nothing, even on a read-only file."""
        try:
            work()
        except Exception as error:
            self.database.failed(what, error)
            return False
        if a_write:
            self.database.succeeded()
        return True

    def dispatch_job(self) -> None:
        with self.busy:
            self.idle.clear()
            try:
                # The heartbeat is the pass's first write: a database that refuses it is
                # told once a minute, and no pass starts that would fail on every row.
                if self._try("the heartbeat", self.heartbeat_job, a_write=True):
                    self._try("a dispatch pass", self._pass)
            finally:
                self.idle.set()

    def _pass(self) -> None:
        summary = self.dispatcher.run_pass()
        if +summary:
            log.info("pass: %s", counts_text(summary))

    def heartbeat_job(self) -> None:
        workers.heartbeat(self.rt, self.worker_id)

    def sweep_job(self) -> None:
        """Expired leases and unconfirmed sends are resolved even while passes find nothing
        due; changed clinic files are taken (or the last good ones kept)."""
        if self.busy.acquire(blocking=False):  # a running pass resolves them itself
            try:
                self._try("the lease sweep", self._resolve)
            finally:
                self.busy.release()
        self._try("taking changed clinic files", self._take_files)
        self._try("forgetting workers gone for 7 days", lambda: workers.forget_gone(self.rt))

    def _resolve(self) -> None:
        summary = Counter()
        self.dispatcher.resolve_in_doubt(summary)
        if +summary:
            log.info("sweep: %s", counts_text(summary))

    def _take_files(self) -> None:
        # Until the versions taken at start are recorded, record them all (not only changes).
        if self._files_taken:
            self.watch.check()
        else:
            self.watch.record_all()
            self._files_taken = True

    def run(self) -> int:
        guard_fatal_signals()
        self._try("the first heartbeat", self.heartbeat_job, a_write=True)
        self._try("recording the clinic files", self._take_files)
        start = datetime.now(timezone.utc)
        interval = self.settings.dispatch_interval
        # max_instances=1 and coalesce: passes never overlap; misfire_grace_time=None: a
        # late pass still runs (a dropped pass would delay messages by a whole interval).
        self.scheduler.add_job(self.dispatch_job, "interval", seconds=interval, id="dispatch", next_run_time=start,
                               max_instances=1, coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(lambda: self._try("the heartbeat", self.heartbeat_job, a_write=True), "interval",
                               seconds=min(HEARTBEAT_EVERY, interval), id="heartbeat", max_instances=1,
                               coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(self.sweep_job, "interval", seconds=min(SWEEP_EVERY, interval),
                               id="sweep", max_instances=1, coalesce=True, misfire_grace_time=None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        log.info("worker %s started: dispatch every %gs; a worker silent for %gs counts as stopped",
                 self.worker_id, interval, workers.stale_after(interval).total_seconds())
        self.scheduler.start()
        return self._finish()

    def _stop(self, signum, _frame) -> None:
        log.info("%s: claiming nothing more, finishing the sends in flight", signal.Signals(signum).name)
        self.dispatcher.stopping.set()
        self.scheduler.shutdown(wait=False)

    def _finish(self) -> int:
        if not self.idle.wait(SHUTDOWN_GRACE):
            log.warning("sends still in flight after %ss; their leases will be recovered", SHUTDOWN_GRACE)
        try:
            released = workers.stop(self.rt, self.worker_id)
        except Exception as error:
            self.database.failed("the clean stop", error)
            log.warning("worker stopped; claimed-but-unsent messages come back when their lease runs out")
            return 0
        log.info("worker stopped; %d claimed-but-unsent messages put back", released)
        return 0
