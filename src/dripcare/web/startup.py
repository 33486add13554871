"""Starting the web process (SPEC 3.1): every bad setting it uses named at once, one line
each; on the defaults it starts, with its Twilio routes off (503) until Twilio is
configured, and its first log line says which routes are off and why."""

from __future__ import annotations

import logging

from twilio.request_validator import RequestValidator

from dripcare.app.runtime import Runtime, build_notifier
from dripcare.app.serving import DatabaseBehind, open_web_runtime, watch_clinic_files
from dripcare.config import logs
from dripcare.config.clinic import ConfigError
from dripcare.config.settings import Settings, SettingsError
from dripcare.web.context import WebContext

log = logging.getLogger("dripcare.web")

# Every setting the web process reads; the transports' own settings only turn notices off.
WEB_SETTINGS = ("database_url", "clock", "log_format", "dispatch_interval", "public_base_url",
                "sms_transport", "email_transport", "unsubscribe_keys")
TWILIO_ROUTES = "/twilio/status and /twilio/inbound"
OTHER_ROUTES = "/u/<token>, /healthz and /healthz/worker"
# gunicorn's APP_LOAD_ERROR: its arbiter stops instead of booting the worker again and again.
GUNICORN_STOP = 4


def start(settings: Settings | None, runtime: Runtime | None) -> WebContext:
    """gunicorn gives no settings: this process's own, its logging set up here, and a bad
    setting logged (no traceback) before the process stops. A caller that gives settings
    (`dripcare web`, tests) gets the SettingsError to report."""
    if settings is not None:
        return _start(settings, runtime)
    settings = Settings()
    try:
        logs.configure(settings.log_format)
    except SettingsError:
        logs.configure("text")  # the bad format is among the lines below
    try:
        return _start(settings, runtime)
    except (SettingsError, ConfigError, DatabaseBehind) as error:
        for line in getattr(error, "lines", None) or str(error).splitlines():
            log.error("%s", line)
        log.error("the web process did not start: fix the above and start it again")
        raise SystemExit(GUNICORN_STOP) from None


def check_settings(settings: Settings) -> None:
    """Every setting the web process uses, all at once: SettingsError with one line each."""
    settings.validate(*WEB_SETTINGS)


def _start(settings: Settings, runtime: Runtime | None) -> WebContext:
    check_settings(settings)
    off = twilio_off(settings)
    log.info("%s", routes_line(off, settings))  # the first line: what this process answers
    log.info("database %s, %s", settings.database_shown(), settings.clock_shown())
    rt = runtime or open_web_runtime(settings)
    watch = watch_clinic_files(rt, settings)
    notices = build_notifier(rt, settings)
    for line in notices.describe():
        log.warning("%s", line)
    web = WebContext(rt=rt, keys=settings.unsubscribe_keys(), notices=notices,
                     dispatch_interval=settings.dispatch_interval, watch=watch, twilio_off=off)
    if not off:
        web.validator = RequestValidator(settings.twilio_auth_token("it checks Twilio signatures"))
        web.base_url = settings.public_base_url
    return web


def twilio_off(settings: Settings) -> list[str]:
    """The settings missing for Twilio's requests to be checked (then they get 503)."""
    missing = []
    try:
        settings.twilio_auth_token("Twilio signatures are checked with it")
    except SettingsError:
        missing.append("TWILIO_AUTH_TOKEN")
    if settings.public_base_url is None:
        missing.append("DRIPCARE_PUBLIC_BASE_URL")
    return missing


def routes_line(off: list[str], settings: Settings) -> str:
    if off:
        return (f"web: {TWILIO_ROUTES} are off (they answer 503 and change nothing): {' and '.join(off)} "
                f"{'is' if len(off) == 1 else 'are'} not set (Twilio signatures are checked with the auth token "
                f"against the public URL Twilio calls). {OTHER_ROUTES} are on")
    return (f"web: every route is on: {TWILIO_ROUTES} (signatures checked for {settings.public_base_url}), "
            f"{OTHER_ROUTES}")
