"""The outbox on PostgreSQL: migrations, atomic claims shared by many workers
(FOR UPDATE SKIP LOCKED), and a dispatch pass."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from dripcare.store import outbox
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.store.db import current_revision, ensure_schema, make_engine, upgrade, DatabaseBehind
from dripcare.app.runtime import Runtime
from dripcare.config.settings import Settings

from tests.support.dispatching import enroll_sample, jsonl, make_dispatcher, rows

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_server):
    """A fresh database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(Settings({"DATABASE_URL": postgres_server}).database_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def pg_rt(pg_url, clinic_dir, clock):
    engine = make_engine(Settings({"DATABASE_URL": pg_url}).database_url)
    upgrade(engine)
    clinic = load_clinic(clinic_dir / "config")
    yield Runtime(engine, clinic, load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages"), clock)
    engine.dispose()


def test_a_database_behind_the_code_is_refused_until_upgraded(pg_url):
    engine = make_engine(Settings({"DATABASE_URL": pg_url}).database_url)
    with pytest.raises(DatabaseBehind, match="dripcare db upgrade"):
        ensure_schema(engine)
    upgrade(engine)
    ensure_schema(engine)
    assert current_revision(engine) is not None
    engine.dispose()


def test_concurrent_claims_never_hand_one_row_to_two_workers(pg_rt):
    for n in range(12):
        enroll_sample(pg_rt, phone=f"+1 212 555 01{n:02d}", email=f"p{n}@example.org")
    due = sum(1 for m in rows(pg_rt.engine) if m.due_at <= pg_rt.clock.now() and m.status == "scheduled")
    assert due >= 24
    claimed: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def worker(n: int) -> None:
        start.wait()
        while True:
            ids = outbox.claim_due(pg_rt.engine, pg_rt.clock.now(), 3, f"w{n}", ["sms", "email"])
            if not ids:
                return
            with lock:
                claimed.extend(ids)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(claimed) == due
    assert Counter(claimed).most_common(1)[0][1] == 1


def test_a_claim_skips_rows_another_worker_holds_locked(pg_rt):
    for n in range(3):
        enroll_sample(pg_rt, phone=f"+1 212 555 01{n:02d}", email=f"p{n}@example.org")
    holder = pg_rt.engine.connect()
    transaction = holder.begin()
    held = holder.execute(sa.text("SELECT id FROM message WHERE status = 'scheduled' ORDER BY due_at, id "
                                  "LIMIT 2 FOR UPDATE")).scalars().all()
    result: list[int] = []
    claimer = threading.Thread(target=lambda: result.extend(
        outbox.claim_due(pg_rt.engine, pg_rt.clock.now(), 50, "w2", ["sms", "email"])))
    claimer.start()
    claimer.join(timeout=20)
    blocked = claimer.is_alive()
    transaction.rollback()
    holder.close()
    claimer.join(timeout=20)
    assert not blocked, "the claim waited for locked rows instead of skipping them"
    assert result and not set(result) & set(held)


def test_a_dispatch_pass_on_postgres_sends_each_due_message_once(pg_rt, tmp_path):
    enroll_sample(pg_rt)
    dispatcher = make_dispatcher(pg_rt, tmp_path)
    first = dispatcher.run_pass()
    second = dispatcher.run_pass()
    dispatcher.close()
    assert first["sent"] == 2 and second["sent"] == 0
    lines = jsonl(tmp_path / "outbox" / "sms.jsonl") + jsonl(tmp_path / "outbox" / "email.jsonl")
    assert sorted(line["message_id"] for line in lines) == sorted(m.id for m in rows(pg_rt.engine, status="sent"))


def test_two_processes_replanning_one_patient_take_turns(pg_rt):
    from dripcare.app import messages as staff_messages
    from dripcare.store.db import transaction
    from dripcare.store.models import Patient
    from dripcare.app.reconcile import reconcile_patient

    patient, enrollment = enroll_sample(pg_rt)
    with pg_rt.engine.begin() as c:  # as if the plan had never been written
        c.execute(sa.text("DELETE FROM message_event"))
        c.execute(sa.text("DELETE FROM message"))
    outcome: dict = {}

    def second_process() -> None:
        try:
            outcome["changes"] = staff_messages.replan(pg_rt, by="second", enrollment_id=str(enrollment.id)).counts
        except Exception as error:  # without the turn-taking: a duplicate plan_key
            outcome["error"] = error

    with transaction(pg_rt.engine) as session:  # the first process, mid-replan
        first = reconcile_patient(session, session.get(Patient, patient.id), pg_rt.clinic, pg_rt.campaigns,
                                  pg_rt.clock.now(), "first")
        other = threading.Thread(target=second_process)
        other.start()
        assert _waits_on_a_lock(pg_rt.engine), "the second replan did not wait for the first"
    other.join(timeout=30)
    assert "error" not in outcome, outcome
    assert sum(first.counts.values()) > 0 and sum(outcome["changes"].values()) == 0


def _waits_on_a_lock(engine, polls: int = 200) -> bool:
    """Bounded polling of pg_stat_activity: another session is blocked on a lock."""
    for _ in range(polls):
        with engine.connect() as c:
            if c.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar():
                return True
        threading.Event().wait(0.05)
    return False


def test_every_worker_takes_its_send_slots_from_one_row(pg_rt):
    from dripcare.delivery.rate import SHARED_MARGIN, SharedRate

    one, other = SharedRate(pg_rt.engine, "sms", 10), SharedRate(pg_rt.engine, "sms", 10)  # two workers
    slots = one.reserve(3) + other.reserve(2) + one.reserve(1)
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    # Evenly spaced across both, never bunched (to within the time a round trip takes to read).
    assert all(abs(gap - SHARED_MARGIN / 10) < 0.01 for gap in gaps), gaps
    assert one.may_start(slots[0]) and not one.may_start(slots[0] - 1.0)  # never a late start


def test_a_worker_gives_back_the_slots_it_did_not_use_unless_another_took_later_ones(pg_rt):
    from dripcare.delivery.rate import SharedRate

    one, other = SharedRate(pg_rt.engine, "email", 5), SharedRate(pg_rt.engine, "email", 5)
    first, unused = one.reserve(2)
    one.give_back([unused])
    again = other.reserve(1)[0]
    assert abs(again - unused) < 0.01  # the freed slot went to the next caller
    one.reserve(1)
    other.give_back([again])  # another reservation came after: the pace is kept
    assert one.reserve(1)[0] > again + 2 * one.spacing - 0.01


def test_a_worker_kept_waiting_on_the_rate_row_still_places_its_slots_after_the_others(pg_rt):
    """A worker's UPDATE may wait on another worker's lock of the `send_rate` row (a worker
    descheduled mid-transaction). Its slots must still come after the slots already given:
    the server's clock is placed on ours apart from the UPDATE, never across the wait."""
    from dripcare.delivery.rate import SharedRate

    one, other = SharedRate(pg_rt.engine, "sms", 10), SharedRate(pg_rt.engine, "sms", 10)
    earlier = other.reserve(1)[0]  # the row exists and its clock is read, as a running worker's is
    waited: dict[str, object] = {}

    def reserve_behind_the_lock():
        waited["asked"] = time.monotonic()
        waited["slot"] = other.reserve(1)[0]

    kept_waiting = threading.Thread(target=reserve_behind_the_lock)
    with pg_rt.engine.begin() as holder:  # a worker holding the row, off the CPU for a while
        holder.execute(sa.text("SELECT next_at FROM send_rate WHERE channel = 'sms' FOR UPDATE"))
        kept_waiting.start()
        assert _waits_on_a_lock(pg_rt.engine)
        threading.Event().wait(0.6)  # the lock wait itself: what the old reading put the slots early by half of
    kept_waiting.join(timeout=30)
    # The slot is the server's: right after the earlier one, or its clock as the UPDATE
    # began (PostgreSQL reads it before the wait). Placed where it is, not half the wait before.
    assert abs(waited["slot"] - max(earlier + other.spacing, waited["asked"])) < 0.02, (earlier, waited)
    mine = one.reserve(1)[0]
    assert mine - waited["slot"] >= one.spacing - 0.005  # and the next worker's slot still comes after it
