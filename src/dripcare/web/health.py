"""Health routes (SPEC 8) for the platform and for uptime monitors. `/healthz` answers 200
whenever the database does, whatever the worker: a platform restarting the web process on
it must never stop STOP handling because a worker is down. `/healthz/worker` is the one
that pages someone when no worker has beaten for 3 dispatch intervals (real time)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from dripcare.app.health import health, worker_fresh, worker_limit
from dripcare.web.context import current

blueprint = Blueprint("health", __name__)
log = logging.getLogger("dripcare.web")


@blueprint.get("/healthz")
def healthz():
    try:
        now = health(current().rt)
    except Exception as error:
        log.warning("healthz: database not answering: %s", type(error).__name__)
        return jsonify(database="unavailable"), 503
    return jsonify(database="ok", worker_heartbeat_age_seconds=_rounded(now.heartbeat_age),
                   paused_channels=now.paused_channels), 200


@blueprint.get("/healthz/worker")
def healthz_worker():
    web = current()
    try:
        age = health(web.rt).heartbeat_age
    except Exception as error:
        log.warning("healthz/worker: database not answering: %s", type(error).__name__)
        return jsonify(database="unavailable", worker="unknown"), 503
    fresh = worker_fresh(age, web.dispatch_interval)
    body = {"worker": "ok" if fresh else ("none" if age is None else "stale"),
            "worker_heartbeat_age_seconds": _rounded(age), "limit_seconds": worker_limit(web.dispatch_interval)}
    return jsonify(body), 200 if fresh else 503


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 1)
