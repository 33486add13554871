"""The long-running worker: APScheduler runs a few fixed jobs (dispatch, heartbeat, sweep);
the outbox table, not the scheduler, holds the messages (DESIGN)."""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from dripcare.app import workers
from dripcare.app.config_watch import ConfigWatch
from dripcare.app.runtime import Runtime, build_dispatcher
from dripcare.config.logs import counts_text
from dripcare.config.settings import Settings

log = logging.getLogger("dripcare.worker")
SHUTDOWN_GRACE = 25.0
HEARTBEAT_EVERY = 10.0
SWEEP_EVERY = 30.0
new_worker_id = workers.new_worker_id

__all__ = ["WorkerProcess", "announce", "build_dispatcher", "new_worker_id"]


def announce(settings: Settings, dispatcher) -> None:
    """First log lines: what each channel goes through, the clock, the rate."""
    development = [f"{c}={t.name}" for c, t in dispatcher.transports.items() if t.development]
    routes = ", ".join(f"{c}={t.name}" for c, t in dispatcher.transports.items())
    if len(development) == len(dispatcher.transports):
        log.warning("transports %s: development only, nothing reaches patients", routes)
    elif development:
        log.warning("transports %s: %s development only, its messages reach no patient", routes,
                    " and ".join(development))
    else:
        log.info("transports: %s", routes)
    if settings.now_spec:
        log.warning("DRIPCARE_NOW=%s: running on a simulated clock", settings.now_spec)


class WorkerProcess:
    def __init__(self, rt: Runtime, settings: Settings, dispatcher, worker_id: str):
        self.rt, self.settings, self.dispatcher, self.worker_id = rt, settings, dispatcher, worker_id
        self.watch = ConfigWatch(rt, settings.config_dir, settings.messages_dir)
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
        workers.heartbeat(self.rt, self.worker_id)

    def sweep_job(self) -> None:
        """Expired leases and unconfirmed sends are resolved even while passes find nothing
        due; changed clinic files are taken (or the last good ones kept)."""
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
            self.watch.check()
            workers.forget_gone(self.rt)
        except Exception:
            log.exception("clinic file sweep failed")

    def run(self) -> int:
        self.heartbeat_job()
        self.watch.record_all()
        start = datetime.now(timezone.utc)
        interval = self.settings.dispatch_interval
        # max_instances=1 and coalesce: passes never overlap; misfire_grace_time=None: a
        # late pass still runs (a dropped pass would delay messages by a whole interval).
        self.scheduler.add_job(self.dispatch_job, "interval", seconds=interval, id="dispatch", next_run_time=start,
                               max_instances=1, coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(self.heartbeat_job, "interval", seconds=min(HEARTBEAT_EVERY, interval),
                               id="heartbeat", max_instances=1, coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(self.sweep_job, "interval", seconds=min(SWEEP_EVERY, interval),
                               id="sweep", max_instances=1, coalesce=True, misfire_grace_time=None)
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
        released = workers.stop(self.rt, self.worker_id)
        log.info("worker stopped; %d claimed-but-unsent messages put back", released)
        return 0
