"""Workload 1, import: a clinic's export of N patients x 6 sessions through `dripcare
import` (the CLI process, start to end, on a fresh database), against the same number of
messages as one APScheduler 3 `date` job each in a SQLAlchemyJobStore (its own
settings), both on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

import profiles
from clinic import T0, cli, import_has_session_id, settings, write_export
from databases import engine_for
from measure import PYTHON, check, clean_env, last_json, median, run, say
from run_context import Context
from staging import migrated


def counts(url: str) -> dict:
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            statuses = dict(c.execute(sa.text("SELECT status, count(*) FROM message GROUP BY status")).all())
            return {"patients": c.execute(sa.text("SELECT count(*) FROM patient")).scalar_one(),
                    "sessions": c.execute(sa.text("SELECT count(*) FROM treatment_session")).scalar_one(),
                    "events": c.execute(sa.text("SELECT count(*) FROM message_event")).scalar_one(),
                    "messages": sum(statuses.values()), "by_status": statuses}
    finally:
        engine.dispose()


def due_file(url: str, path: Path) -> int:
    """Every planned message's due instant, for the job-per-message design to schedule."""
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            due = c.execute(sa.text("SELECT due_at FROM message ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    stamps = [(d if isinstance(d, datetime) else datetime.fromisoformat(str(d))).replace(tzinfo=timezone.utc)
              for d in due]
    path.write_text("\n".join(f"{s.timestamp():.0f}" for s in stamps))
    return len(stamps)


def one_import(ctx: Context, database: str, name: str, csv: Path) -> tuple[str, object]:
    url = migrated(ctx, database, name)  # as `dripcare db upgrade` leaves a new database
    env = settings(ctx.clinic, url, T0, ctx.workdir / "outbox")
    ran = cli(ctx.clinic, ctx.workdir, env, "import", str(csv), "--by", "bench", what=f"import {name}")
    return url, ran


def apscheduler(ctx: Context, database: str, name: str, due: Path) -> dict:
    if database == "sqlite":
        url = ctx.sqlite.fresh(name)
    else:
        url = ctx.pg.fresh(name).replace("postgres://", "postgresql+psycopg://", 1)
    ran = run([PYTHON, str(Path(__file__).with_name("apscheduler_child.py")), "--url", url, "--due", str(due)],
              env=clean_env({}), cwd=ctx.workdir, log=ctx.workdir / f"{name}.log", what="APScheduler job store")
    result = last_json(ran.stdout)
    check(result["stored"] == result["jobs"], f"APScheduler stored {result['stored']} of {result['jobs']} jobs")
    return {"jobs": result["jobs"], "wall": ran.wall, "add_seconds": result["seconds"],
            "block_rate_median": median(result["block_rates"]) if result["block_rates"] else None,
            "peak_rss_mib": ran.peak_rss_mib}


def measure_size(ctx: Context, database: str, patients: int, session_ids: bool, reimport: bool,
                 repeats: int) -> dict:
    csv = ctx.workdir / f"export-{patients}.csv"
    rows = write_export(csv, patients, ctx.clinic.campaign, session_ids=session_ids)
    names = [f"import-{database}-{patients}-{k}" for k in range(repeats)]
    runs, made = import_runs(ctx, database, patients, csv, names)
    url = ctx.db(database).url(names[-1])
    result = {"patients": patients, "csv_rows": rows, "made": made, "runs": runs,
              "wall": median(r["wall"] for r in runs), "cpu": median(r["cpu"] for r in runs),
              "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
    if reimport:
        result.update(import_again(ctx, database, url, csv, made))
    due = ctx.workdir / f"due-{database}-{patients}.txt"
    jobs = due_file(url, due)
    say(f"  {database}: APScheduler, {jobs:,} jobs ...")
    result["apscheduler"] = apscheduler(ctx, database, f"aps-{database}-{patients}", due)
    say(f"  {database}: APScheduler added {jobs:,} jobs in {result['apscheduler']['wall']:.1f} s")
    for name in names:
        ctx.db(database).drop(name)
    return result


def import_runs(ctx: Context, database: str, patients: int, csv: Path, names: list[str]) -> tuple[list, dict]:
    """The same file into fresh databases, once per name: each run's process figures, and
    what the import made (the same every time, or the benchmark says so)."""
    runs, made = [], None
    for name in names:
        url, ran = one_import(ctx, database, name, csv)
        found = counts(url)
        check(found["patients"] == patients, f"import wrote {found['patients']} patients, not {patients}")
        check(found["messages"] > 0, "the import planned no messages")
        check(made is None or made["messages"] == found["messages"],
              f"two imports of one file planned {made and made['messages']} and {found['messages']} messages")
        made = found
        runs.append({"wall": ran.wall, "cpu": ran.cpu, "peak_rss_mib": ran.peak_rss_mib})
        say(f"  {database}: {patients:,} patients, {found['messages']:,} messages: import in {ran.wall:.1f} s")
    return runs, made


def import_again(ctx: Context, database: str, url: str, csv: Path, made: dict) -> dict:
    """The daily import with nothing changed: the same file into the same database."""
    env = settings(ctx.clinic, url, T0, ctx.workdir / "outbox")
    again = cli(ctx.clinic, ctx.workdir, env, "import", str(csv), "--by", "bench", what="import again")
    say(f"  {database}: the same file again (nothing to change): {again.wall:.1f} s")
    # SPEC 9: importing the same file twice changes nothing (a finding if it does, not a failure).
    return {"reimport_wall": again.wall, "reimport_changed": counts(url) != made}


def profile(ctx: Context, session_ids: bool, database: str = "sqlite") -> dict:
    """The import of a smaller file under py-spy, statements counted."""
    patients = ctx.sizes.profile_import_patients
    csv = ctx.workdir / f"export-profile-{patients}.csv"
    write_export(csv, patients, ctx.clinic.campaign, session_ids=session_ids, seed=41)
    url = migrated(ctx, database, f"import-profile-{database}")
    env = settings(ctx.clinic, url, T0, ctx.workdir / "outbox")
    counted = ctx.workdir / "import-profile-counts.json"
    stacks = profiles.record([PYTHON, str(Path(__file__).with_name("counted.py")), str(counted), "import", str(csv),
                              "--by", "bench"], env=clean_env(env), cwd=ctx.workdir, name=f"import-profile-{database}")
    made = counts(url)
    check(made["patients"] == patients, "the profiled import did not import every patient")
    numbers = json.loads(counted.read_text())
    return {"patients": patients, "messages": made["messages"], "counts": numbers,
            "per_patient": profiles.per_unit(numbers, patients),
            "per_message": profiles.per_unit(numbers, made["messages"]), **profiles.summarize(stacks)}


def run_workload(ctx: Context) -> dict:
    session_ids = import_has_session_id()
    say(f"import: the export has {'a' if session_ids else 'no'} session_id column "
        f"({'dripcare import knows it' if session_ids else 'this build of dripcare import does not know it'})")
    out = {"session_id_column": session_ids, "sessions_per_patient": 6, "sqlite": [], "postgresql": []}
    for n, patients in enumerate(ctx.sizes.import_patients):
        again = n == 0 and ctx.sizes.import_again
        out["sqlite"].append(measure_size(ctx, "sqlite", patients, session_ids, reimport=again,
                                          repeats=ctx.repeats(patients, ctx.sizes.import_patients)))
    if ctx.pg:
        for patients in ctx.sizes.pg_import_patients:
            out["postgresql"].append(measure_size(ctx, "postgresql", patients, session_ids, reimport=False,
                                                  repeats=ctx.repeats(patients, ctx.sizes.pg_import_patients)))
    if "import" in ctx.sizes.profiles:
        say("import: profile (py-spy) ...")
        out["profile"] = profile(ctx, session_ids)
    if ctx.pg and "import-postgresql" in ctx.sizes.profiles:
        say("import: profile on PostgreSQL (py-spy) ...")
        out["profile_postgresql"] = profile(ctx, session_ids, "postgresql")
    return out
