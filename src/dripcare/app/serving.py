"""What the web process opens at start (SPEC 3.1, 8): the runtime, with a database that
is down at start logged rather than fatal (`/healthz` answers 503 and the process comes
back with the database), and the clinic files it re-reads while running."""

from __future__ import annotations

import logging

from dripcare.app.config_watch import ConfigWatch
from dripcare.app.runtime import Runtime, open_runtime
from dripcare.config.settings import Settings
from dripcare.delivery.templates import Templates
from dripcare.store.db import DatabaseBehind, ensure_schema, make_engine

__all__ = ["DatabaseBehind", "open_web_runtime", "watch_clinic_files"]

log = logging.getLogger("dripcare.web")


def open_web_runtime(settings: Settings) -> Runtime:
    """DatabaseBehind or ConfigError stop the start; an unreachable database does not."""
    engine = make_engine(settings.database_url)
    try:
        ensure_schema(engine)
    except DatabaseBehind:
        raise
    except Exception as error:  # the driver's error: its text may hold the URL, so its type only
        log.error("database not reachable at start (%s); /healthz answers 503 until it is", type(error).__name__)
    return open_runtime(settings, engine=engine, clock=settings.clock())


def watch_clinic_files(rt: Runtime, settings: Settings) -> ConfigWatch:
    """clinic.toml and the campaigns as this process took them; planning stays the worker's."""
    if rt.templates is None:
        rt.templates = Templates(rt.messages_dir or settings.messages_dir, rt.clinic)
    return ConfigWatch(rt, rt.config_dir or settings.config_dir, rt.messages_dir or settings.messages_dir,
                       replan=False)
