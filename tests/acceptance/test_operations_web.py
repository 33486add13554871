"""The Procfile's web line as a platform runs it (SPEC 8, 10): gunicorn with gunicorn.conf.py from
the app folder, bound to $PORT, WEB_CONCURRENCY processes of gthread workers, and an access
log with paths only: no query string, no unsubscribe token, no client address."""

from __future__ import annotations

import requests

from dripcare.domain.unsubscribe import make_token
from tests.support.fleet import Web, environment, wait_for

SECRET = "test-secret-key-0123456789abcdef"
WEB = {"TWILIO_AUTH_TOKEN": "test-auth-token", "DRIPCARE_PUBLIC_BASE_URL": "https://care.example.org",
       "DRIPCARE_SECRET_KEY": SECRET, "DRIPCARE_NOW": "2027-03-01T15:00:00Z"}


def test_gunicorn_runs_as_configured_and_logs_no_patient_traces(clinic_dir, tmp_path):
    env = environment(f"sqlite:///{tmp_path / 'web.db'}", clinic_dir, **WEB)
    web = Web(env, tmp_path / "app", WEB_CONCURRENCY="2")
    token = make_token(7, SECRET)
    try:
        assert wait_for(web.up, limit=30), web.log()
        assert web.get("/healthz").json()["database"] == "ok"
        assert web.get(f"/u/{token}?utm_source=email").status_code == 404  # signed, but no patient 7
        unsigned = requests.post(f"{web.url}/twilio/status?m=4242", data={"MessageStatus": "delivered"}, timeout=5)
        assert unsigned.status_code == 403
    finally:
        assert web.stop() == 0, web.log()
    log = web.log()
    assert "Using worker: gthread" in log and log.count("Booting worker") == 2
    assert f"Listening at: http://0.0.0.0:{web.port}" in log
    assert '"GET /healthz" 200' in log and '"POST /twilio/status" 403' in log and '"GET /u/..." ' in log
    for trace in (token, "utm_source", "m=4242", "127.0.0.1"):
        assert trace not in log, trace
