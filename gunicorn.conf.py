"""gunicorn settings for the `web` process (Procfile): Twilio callbacks and replies,
unsubscribe links, health checks.

Environment: PORT (default 8000) and WEB_CONCURRENCY (processes, default 2), the names
hosting platforms set. Each process runs THREADS request threads (gthread): Twilio waits
on our TwiML, so one slow request must not hold the others back.
"""

import os
import re

from gunicorn.glogging import Logger

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = 4

# Twilio gives up on a webhook after 15 s; a request still running at 30 s is stuck.
timeout = 30
# SIGTERM (a deploy, a restart): requests in flight get as long as the worker's sends do.
graceful_timeout = 25
keepalive = 5
# The workers' heartbeat files live in memory, not on a disk that may be full or slow.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No control socket file in $HOME: platforms often give a read-only one, and two
# processes on one machine would fight over it.
control_socket_disable = True


class PrivateAccessLog(Logger):
    """Access lines carry the method, the path, the status, the size and the time, never a
    query string (a status callback's `m=`), an unsubscribe token (`/u/<token>` becomes
    `/u/...`), a client address, a referrer or a user agent: patients' traces stay out."""

    _TOKEN = re.compile(r"^/u/[^/]+")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = self._TOKEN.sub("/u/...", atoms.get("U") or "")
        return atoms


logger_class = PrivateAccessLog
accesslog = "-"
errorlog = "-"
access_log_format = '%(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
