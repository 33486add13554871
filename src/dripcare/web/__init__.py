"""The web process (SPEC 8): Twilio status callbacks and replies, one-click unsubscribe,
health checks. gunicorn serves `dripcare.web:create_app()`; `dripcare web` runs it for
development.

The factory only wires: one blueprint per surface (web/twilio.py, web/unsubscribe.py,
web/health.py), what they share (web/context.py), and the start-up checks
(web/startup.py). Nothing here trusts a caller: Twilio routes check the SDK's signature
against the public URL Twilio called, unsubscribe links check their HMAC, and a refused
request changes nothing. Logs carry ids and masked numbers, never a message body (SPEC 10).
"""

from __future__ import annotations

from flask import Flask

from dripcare.app.runtime import Runtime
from dripcare.config.settings import Settings
from dripcare.web import health, twilio, unsubscribe
from dripcare.web.startup import check_settings, start

__all__ = ["check_settings", "create_app"]

# Twilio's largest inbound form (1,600 characters of Body, each up to 12 bytes URL-encoded,
# plus its other fields and ten MediaUrls) stays under 25 KB. A larger request body is
# refused with 413 before it is read, so nothing huge is held in memory or stored.
MAX_REQUEST_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """gunicorn calls this with no arguments: the process's settings, logging and clock."""
    web = start(settings, runtime)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions["dripcare"] = web
    app.before_request(web.reload_if_due)
    for surface in (twilio, unsubscribe, health):
        app.register_blueprint(surface.blueprint)
    return app
