"""Scaling out on PostgreSQL, checked from the outside (SPEC 7 "Rate", "Workers"): four
`dripcare worker` processes at DRIPCARE_SMS_RATE=10 drain a burst of 500 SMS through a
loopback Twilio; one of them is killed with SIGKILL mid-batch. The provider never sees more
than 10 requests in any one second, and gets every message exactly once.

The workers run on a simulated clock (x20), so the killed worker's 5-minute leases run out
in 15 real seconds and the survivors take its rows back while the burst still drains
(a lookup at Twilio first: what it already took is confirmed, never sent again). Sending
itself is paced on real time, as the provider counts it."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from tests.support.fleet import (ListingTwilio, Worker, add_burst_campaign, environment, fresh_postgres,
                                 patients_csv, run, simulated, twilio_settings, wait_for)

pytestmark = pytest.mark.postgres

START = "2027-03-01T15:00:00Z"  # 10:00 in New York: far from quiet hours for the whole run
SPEED = 20
PATIENTS, NOTES = 100, 5  # 500 SMS due at once
RATE = 10


def _sms_statuses(url: str) -> Counter:
    engine = sa.create_engine(url.replace("postgres://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return Counter(dict(connection.execute(sa.text(
                "SELECT status, count(*) FROM message WHERE channel = 'sms' GROUP BY status")).all()))
    finally:
        engine.dispose()


def _sms_ids(url: str) -> list[int]:
    engine = sa.create_engine(url.replace("postgres://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return sorted(connection.execute(sa.text("SELECT id FROM message WHERE channel = 'sms'")).scalars())
    finally:
        engine.dispose()


def test_four_workers_share_one_rate_and_a_killed_one_loses_nothing(postgres_server, clinic_dir, tmp_path):
    url = fresh_postgres(postgres_server)
    campaign = add_burst_campaign(clinic_dir, NOTES)
    base = environment(url, clinic_dir, DRIPCARE_NOW=START)
    assert run(base, tmp_path, "db", "upgrade").returncode == 0  # the Procfile's release step
    imported = run(base, tmp_path, "import", str(patients_csv(tmp_path / "burst.csv", PATIENTS, campaign,
                                                                "2027-03-20 10:00")))
    assert imported.returncode == 0, imported.stderr
    ids = _sms_ids(url)
    assert len(ids) == PATIENTS * NOTES

    now_spec = f"{START} x{SPEED}"
    with ListingTwilio(clock=simulated(now_spec)) as twilio:
        twilio.delay = 0.05  # a provider that takes its time to answer
        env = {**base, **twilio_settings(twilio), "DRIPCARE_NOW": now_spec, "DRIPCARE_SMS_RATE": str(RATE),
               "DRIPCARE_DISPATCH_INTERVAL": "1", "DRIPCARE_OUTBOX_DIR": str(tmp_path / "outbox")}
        workers = [Worker(env, tmp_path, tmp_path / f"worker-{n}.log") for n in range(4)]
        try:
            assert wait_for(lambda: len(twilio.created) >= 120, limit=60), [w.log() for w in workers]
            workers[1].kill()  # mid-batch: rows claimed, some attempted, some on the way
            assert wait_for(lambda: _sms_statuses(url).get("sent", 0) == len(ids), limit=120), _sms_statuses(url)
        finally:
            codes = [w.stop() for w in workers if w is not workers[1]]
    assert codes == [0, 0, 0], [w.log() for w in workers]
    got = Counter(twilio.message_ids())
    assert sorted(got) == ids  # none lost
    assert [i for i, n in got.items() if n > 1] == []  # none twice
    busiest = twilio.busiest_second()
    assert len(busiest) <= RATE, f"{len(busiest)} requests within one second at the provider: {busiest}"
