"""Measure 1: the cost of one claim (`outbox.claim_due`, a batch of 200) as the backlog of
future `scheduled` rows grows, on SQLite and, when a server can be started, PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from dripcare.store import outbox
from dripcare.store.db import make_engine, upgrade
from dripcare.store.models import Enrollment, Patient
from dripcare.config.settings import Settings

from measure import Section, count, median_of, ms, say, seconds, us
from tests.pg import PostgresUnavailable, throwaway_postgres

BATCH = 200
CHANNELS = ["sms", "email"]
CHUNK = 50_000  # rows per executemany: bounds the parameter list held in memory
STATUS_INDEXES = ("ix_message_status_due", "ix_message_scheduled_due")


@dataclass
class ClaimPoint:
    backlog: int
    fill_seconds: float  # inserting the rows added since the previous point
    claim: float  # median seconds of one claim of BATCH due rows
    claimed: int
    empty_claim: float  # median seconds of a claim when nothing is due


def add_owner(engine: Engine, now: datetime) -> tuple[int, int]:
    """One patient and one enrollment every benchmark row belongs to (foreign keys are on)."""
    with engine.begin() as c:
        patient_id = c.execute(sa.insert(Patient.__table__).values(
            first_name="Bench", last_name="Backlog", timezone="America/Edmonton", locale="en",
            phone_invalid=False, email_invalid=False, discreet=False, created_at=now)
            .returning(Patient.__table__.c.id)).scalar_one()
        enrollment_id = c.execute(sa.insert(Enrollment.__table__).values(
            patient_id=patient_id, campaign_id="ketamine-iv", status="active", enrolled_at=now, footer_since=now)
            .returning(Enrollment.__table__.c.id)).scalar_one()
    return patient_id, enrollment_id


def outbox_row(owner: tuple[int, int], n: int, due_at: datetime, now: datetime, tag: str) -> dict:
    patient_id, enrollment_id = owner
    return dict(plan_key=f"{enrollment_id}:{tag}:{n}", patient_id=patient_id, enrollment_id=enrollment_id,
                step_id="bench", channel=CHANNELS[n % 2], priority=50, anchor_at=due_at, due_at=due_at,
                expires_at=due_at + timedelta(hours=72), status="scheduled", attempts=0, ever_claimed=False,
                footer=False, updated_at=now)


def insert_rows(engine: Engine, rows) -> None:
    """Bulk insert through SQLAlchemy Core executemany, in chunks."""
    chunk: list[dict] = []
    with engine.begin() as c:
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK:
                c.execute(sa.insert(outbox.message), chunk)
                chunk = []
        if chunk:
            c.execute(sa.insert(outbox.message), chunk)


def add_future(engine: Engine, owner, first: int, last: int, now: datetime) -> None:
    """Rows `first`..`last - 1`, due from an hour ahead on, one every 30 seconds."""
    insert_rows(engine, (outbox_row(owner, n, now + timedelta(hours=1, seconds=30 * n), now, "future")
                         for n in range(first, last)))


def add_due(engine: Engine, owner, now: datetime) -> None:
    insert_rows(engine, (outbox_row(owner, n, now - timedelta(seconds=n + 1), now, "due") for n in range(BATCH)))


def put_back(engine: Engine, ids: list[int]) -> None:
    """Undo a claim so the next repeat claims the same rows."""
    with engine.begin() as c:
        c.execute(sa.update(outbox.message).where(outbox.message.c.id.in_(ids))
                  .values(status="scheduled", lease_until=None, claimed_by=None))


def claim_once(engine: Engine, now: datetime) -> list[int]:
    return outbox.claim_due(engine, now, BATCH, "bench", CHANNELS)


def time_claim(engine: Engine, now: datetime, repeats: int) -> tuple[float, int]:
    last: list[list[int]] = []

    def claim():
        last.append(claim_once(engine, now))

    median = median_of(claim, repeats, between=lambda: put_back(engine, last[-1]))
    return median, len(last[-1])


def time_empty_claim(engine: Engine, now: datetime, repeats: int) -> float:
    """A claim at an instant before anything is due: what an idle dispatch pass pays."""
    return median_of(lambda: claim_once(engine, now - timedelta(days=1)), repeats)


def measure_backlogs(engine: Engine, backlogs: list[int], now: datetime, repeats: int, label: str) -> list[ClaimPoint]:
    owner = add_owner(engine, now)
    add_due(engine, owner, now)
    if engine.dialect.name == "postgresql":
        _analyze(engine)
    points, have = [], 0
    for backlog in backlogs:
        say(f"  {label}: filling the backlog to {count(backlog)} future rows ...")
        fill, _ = seconds(lambda: add_future(engine, owner, have, backlog, now))
        have = backlog
        if engine.dialect.name == "postgresql":
            _analyze(engine)  # what autovacuum does after a bulk load
        claim, claimed = time_claim(engine, now, repeats)
        empty = time_empty_claim(engine, now, repeats)
        say(f"  {label}: backlog {count(backlog)}: claim of {claimed} in {ms(claim)}, empty claim {ms(empty)}")
        points.append(ClaimPoint(backlog, fill, claim, claimed, empty))
    return points


def _analyze(engine: Engine) -> None:
    # In a committed transaction: on SQLite an autocommit connection still gets our BEGIN
    # IMMEDIATE, and the pool's rollback on return would throw the statistics away.
    with engine.begin() as c:
        c.exec_driver_sql("ANALYZE message")


def claim_plan(engine: Engine, now: datetime) -> list[str]:
    """The database's plan for the claim statement exactly as claim_due sends it."""
    seen: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("UPDATE MESSAGE"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        put_back(engine, claim_once(engine, now))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = seen[0]
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as c:
        rows = c.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters).all()
        c.rollback()
    return _sqlite_tree(rows) if sqlite else [row[0] for row in rows]


def _sqlite_tree(rows) -> list[str]:
    depth = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def indexes_named(plan: list[str]) -> list[str]:
    text = " ".join(plan)
    return sorted({word.strip("(),") for word in text.split() if word.startswith("ix_message")})


def drop_status_indexes(engine: Engine) -> None:
    """For the comparison row only: the same claim with no index on (status, due_at)."""
    with engine.begin() as c:
        for name in STATUS_INDEXES:
            c.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


# --- the report section ----------------------------------------------------------------

def run(sqlite_engine: Engine, backlogs: list[int], now: datetime, repeats: int) -> Section:
    section = Section("1. Claim cost vs backlog")
    say("claim: SQLite")
    points = measure_backlogs(sqlite_engine, backlogs, now, repeats, "sqlite")
    plan = claim_plan(sqlite_engine, now)
    analyzed = _analyzed(sqlite_engine, backlogs[-1], now, repeats)
    drop_status_indexes(sqlite_engine)
    unindexed = time_claim(sqlite_engine, now, repeats)[0], time_empty_claim(sqlite_engine, now, repeats)
    scan_plan = claim_plan(sqlite_engine, now)
    say(f"  sqlite: backlog {count(backlogs[-1])} with no (status, due_at) index: claim in {ms(unindexed[0])}")
    section.table(*_claim_table(points, [analyzed[0], ("no (status, due_at) index", backlogs[-1], *unindexed)]))
    section.blocks.append("SQLite, EXPLAIN QUERY PLAN of the claim statement (no ANALYZE, as a new install runs):\n"
                          + "\n".join(plan))
    section.blocks.append("SQLite, the same statement after ANALYZE:\n" + "\n".join(analyzed[1]))
    pg_points, pg_plan, pg_note, pg_version = _postgres(backlogs, now, repeats)
    if pg_points:
        section.table(*_claim_table(pg_points, [], "PostgreSQL"))
        section.blocks.append("PostgreSQL, EXPLAIN of the claim statement:\n" + "\n".join(pg_plan))
    section.meaning += _claim_meaning(points, plan, analyzed, unindexed, scan_plan, pg_points, pg_plan,
                                      pg_note or pg_version)
    section.facts["PostgreSQL"] = pg_version or f"not measured: {pg_note}"
    section.headline = (f"claim of {BATCH} due rows on SQLite: {ms(points[0].claim)} at {count(points[0].backlog)} "
                        f"future rows, {ms(points[-1].claim)} at {count(points[-1].backlog)}; idle claim "
                        f"{ms(points[0].empty_claim)} -> {ms(points[-1].empty_claim)}"
                        + (f"; PostgreSQL {ms(pg_points[0].claim)} -> {ms(pg_points[-1].claim)}" if pg_points else ""))
    return section


def _analyzed(engine: Engine, backlog: int, now: datetime, repeats: int):
    """The same file after ANALYZE: what the planner picks once it has statistics."""
    _analyze(engine)
    claim, _ = time_claim(engine, now, repeats)
    empty = time_empty_claim(engine, now, repeats)
    say(f"  sqlite: backlog {count(backlog)} after ANALYZE: claim in {ms(claim)}, empty claim {ms(empty)}")
    return ("after ANALYZE", backlog, claim, empty), claim_plan(engine, now)


def _postgres(backlogs: list[int], now: datetime, repeats: int):
    """The same measure on a throwaway server; a note instead when none can be started."""
    say("claim: PostgreSQL")
    try:
        with throwaway_postgres() as url:
            engine = make_engine(Settings({"DATABASE_URL": url}).database_url)
            try:
                upgrade(engine)
                with engine.connect() as c:
                    version = "PostgreSQL " + c.exec_driver_sql("SHOW server_version").scalar_one()
                points = measure_backlogs(engine, backlogs, now, repeats, "postgresql")
                return points, claim_plan(engine, now), None, version
            finally:
                engine.dispose()
    except PostgresUnavailable as why:
        say(f"  skipped: {why}")
        return [], [], str(why), None


def _claim_table(points: list[ClaimPoint], extra: list[tuple], database: str = "SQLite"):
    """One row per backlog, then `extra` rows: (label, backlog, claim seconds, empty claim seconds)."""
    header = [f"{database}: future rows", "pending rows", "bulk insert (rows/s)",
              f"claim of {BATCH} (median)", "per claimed row", "claim, nothing due (median)"]
    rows = []
    previous = 0
    for p in points:
        rate = (p.backlog - previous) / p.fill_seconds if p.fill_seconds else 0
        previous = p.backlog
        rows.append([count(p.backlog), count(p.backlog + BATCH), count(rate), ms(p.claim),
                     us(p.claim / max(p.claimed, 1)), ms(p.empty_claim)])
    for label, backlog, claim, empty in extra:
        rows.append([f"{count(backlog)}, {label}", count(backlog + BATCH), "", ms(claim), us(claim / BATCH), ms(empty)])
    return header, rows


def _claim_meaning(points, plan, analyzed, unindexed, scan_plan, pg_points, pg_plan, pg_about) -> list[str]:
    first, last = points[0], points[-1]
    grow = last.backlog / first.backlog
    claim_ratio, idle_ratio = last.claim / first.claim, last.empty_claim / first.empty_claim
    used = ", ".join(indexes_named(plan)) or "no index"
    text = [
        f"A claim is the one statement every dispatch pass runs: it moves up to {BATCH} due rows to `sending` "
        f"with a lease and writes one `claimed` event per row, in one transaction. On SQLite (a new file, no "
        f"ANALYZE) it took {ms(first.claim)} with {count(first.backlog)} future rows waiting and {ms(last.claim)} "
        f"with {count(last.backlog)}: {_shape(claim_ratio, grow)}. Most of it is the {BATCH} event inserts "
        f"(about {us(first.claim / BATCH)} per claimed row). The idle claim (nothing due), which every pass of "
        f"a quiet worker pays, went from {ms(first.empty_claim)} to {ms(last.empty_claim)}: "
        f"{_shape(idle_ratio, grow)}.",
        _plan_finding(plan, used, analyzed, last),
        f"The last row drops the (status, due_at) indexes from the same file: the claim at {count(last.backlog)} "
        f"then takes {ms(unindexed[0])} and the idle claim {ms(unindexed[1])}, and the plan becomes "
        f"`{_scan_line(scan_plan)}`: without the index every pass reads the whole table.",
    ]
    if pg_points:
        p0, p1 = pg_points[0], pg_points[-1]
        text.append(
            f"{pg_about} (a throwaway local cluster, fsync off, after ANALYZE as autovacuum would run it): "
            f"{ms(p0.claim)} at {count(p0.backlog)} and {ms(p1.claim)} at {count(p1.backlog)} "
            f"({_shape(p1.claim / p0.claim, grow)}); idle {ms(p0.empty_claim)} and {ms(p1.empty_claim)} "
            f"({_shape(p1.empty_claim / p0.empty_claim, grow)}). Index in the plan: "
            f"{', '.join(indexes_named(pg_plan)) or 'none named'}. The claim there takes the rows `FOR UPDATE SKIP "
            f"LOCKED`, so concurrent workers skip each other's rows instead of waiting. Each claimed row's event "
            f"insert is its own statement, a round trip to the server here where SQLite answers in-process.")
    else:
        text.append(f"PostgreSQL was not measured: {pg_about}.")
    return text


def _shape(ratio: float, grow: float) -> str:
    if ratio < 1.5:
        return f"{ratio:.2f}x for {grow:.0f}x the backlog, flat"
    return f"{ratio:.1f}x for {grow:.0f}x the backlog, it grows with the backlog"


def _plan_finding(plan: list[str], used: str, analyzed, last: ClaimPoint) -> str:
    outer = plan[0].strip() if plan else ""
    after = analyzed[1][0].strip() if analyzed[1] else ""
    finding = (f"The inner select finds the due rows through {used}. The outer UPDATE's first plan step is "
               f"`{outer}`")
    if "(status=?)" in outer:
        finding += (": SQLite drives the outer UPDATE from the index on `status` (for the `status = "
                    "'scheduled'` condition the UPDATE repeats) and tests each scheduled row's id against the "
                    f"{BATCH} claimed ids, so that step reads every pending row and grows with the backlog. ")
    else:
        finding += ". "
    claim, idle = ms(analyzed[0][2]), ms(analyzed[0][3])
    if after == outer:
        return finding + (f"`ANALYZE` leaves that step as it is at {count(last.backlog)} rows "
                          f"(claim {claim}, idle {idle}).")
    return finding + (f"After `ANALYZE` the first step becomes `{after}` and the claim at "
                      f"{count(last.backlog)} takes {claim} (idle {idle}); a new database file has no "
                      f"statistics until something runs `ANALYZE` (or `PRAGMA optimize`).")


def _scan_line(plan: list[str]) -> str:
    for marker in ("SCAN message", "SEARCH message"):
        found = [line.strip() for line in plan if marker in line]
        if found:
            return found[-1]
    return " / ".join(line.strip() for line in plan)
