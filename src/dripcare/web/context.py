"""What every blueprint of the web process shares: the runtime, the signature check
Twilio's routes need (or why those routes are off), the unsubscribe keys, the clinic
notices, and the clinic files re-read while running."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import Response, current_app, request
from twilio.request_validator import RequestValidator

from dripcare.app.config_watch import ConfigWatch
from dripcare.app.notices import ClinicNotices
from dripcare.app.runtime import Runtime
from dripcare.domain.privacy import mask_contact

log = logging.getLogger("dripcare.web")
RELOAD_EVERY = timedelta(seconds=30)  # clinic files are looked at no more often, on the process's clock


@dataclass
class WebContext:
    rt: Runtime
    keys: list[str]  # unsubscribe keys: the current one, then the old one
    notices: ClinicNotices
    dispatch_interval: float
    watch: ConfigWatch
    validator: RequestValidator | None = None
    base_url: str | None = None
    twilio_off: list[str] = field(default_factory=list)  # settings missing: the Twilio routes answer 503
    next_reload: datetime = datetime.min.replace(tzinfo=timezone.utc)
    _reloading: threading.Lock = field(default_factory=threading.Lock)

    def reload_if_due(self) -> None:
        """Before a request: take a changed clinic.toml or campaign file (a wrong one keeps
        the last good version). Cheap when not due; one request at a time does the looking."""
        now = self.rt.clock.now()
        if now < self.next_reload or not self._reloading.acquire(blocking=False):
            return
        try:
            self.next_reload = now + RELOAD_EVERY
            self.watch.check()
        except Exception as error:  # the database down, a file unreadable: try again when due
            log.error("could not look at the clinic files: %s", type(error).__name__)
        finally:
            self._reloading.release()

    def twilio_refusal(self) -> Response | None:
        """503 while the Twilio routes are off, 403 for a bad or missing signature, else None."""
        if self.twilio_off:
            return Response("Twilio routes are not configured on this server\n", status=503, mimetype="text/plain")
        if self._signed():
            return None
        log.warning("refused %s: %s X-Twilio-Signature (From %s, MessageSid %s)", request.path,
                    "wrong" if request.headers.get("X-Twilio-Signature") else "missing",
                    mask_contact(request.form.get("From", "")) or "-", request.form.get("MessageSid", "-")[:40])
        return Response("forbidden\n", status=403, mimetype="text/plain")

    def _signed(self) -> bool:
        """Checked against the URL Twilio called (public base + path + query), not the one
        this process sees behind a proxy."""
        signature = request.headers.get("X-Twilio-Signature", "")
        query = request.query_string.decode("latin-1")
        url = self.base_url + request.path + (f"?{query}" if query else "")
        return bool(signature) and self.validator.validate(url, request.form, signature)


def current() -> WebContext:
    return current_app.extensions["dripcare"]
