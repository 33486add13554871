"""Workload 2, idle tick: one dispatch pass of the real dispatcher (`build_dispatcher`,
the worker's settings) when nothing is due, with 10k, 100k and 1M future rows waiting.
What a quiet worker pays every DRIPCARE_DISPATCH_INTERVAL, all day.

On the same SQLite outboxes (up to `OUTBOX_ROWS_AT_MOST` rows), `dripcare outbox --json`
as staff run it: its peak RSS at 10k and 100k rows says whether it streams (SPEC 9)."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import event

from clinic import FIRST_COURSE_DAY, T0, cli, settings
from measure import check, median, say
from run_context import Context
from staging import Copier, with_template

OUTBOX_ROWS_AT_MOST = 200_000  # the 1M outbox is printed by nobody; the streaming shows by 100k
SPREAD_HOURS = 720  # copies' courses start up to 30 days apart: due times spread, not piled


def template_course() -> list[str]:
    day, times = FIRST_COURSE_DAY, []
    for _ in range(6):
        times.append(f"{day:%Y-%m-%d} 09:30")
        day += timedelta(days=2)
    return times


def future_only(table: str, row: dict) -> bool:
    """Only rows due in the future are copied (the template's welcome is due at once)."""
    if table != "message":
        return True
    due = row["due_at"]
    return row["status"] == "scheduled" and due.replace(tzinfo=T0.tzinfo) > T0 + timedelta(hours=1)


def time_passes(url: str, ctx: Context, passes: int) -> dict:
    from dripcare.app.runtime import build_dispatcher, open_runtime
    from dripcare.config.settings import Settings

    env = settings(ctx.clinic, url, T0 + timedelta(minutes=2), ctx.workdir / "outbox")
    config = Settings(env)
    rt = open_runtime(config)
    statements = []
    listener = lambda *args: statements.append(1)  # noqa: E731
    event.listen(rt.engine, "before_cursor_execute", listener)
    dispatcher = build_dispatcher(rt, config, "bench-idle")
    try:
        dispatcher.run_pass()  # the first pass warms the pool and the statement cache
        times, counts = [], []
        for _ in range(passes):
            before = len(statements)
            start = time.perf_counter()
            summary = dispatcher.run_pass()
            times.append(time.perf_counter() - start)
            counts.append(len(statements) - before)
            check(not summary.get("sent"), f"an idle pass sent {summary.get('sent')} messages: the staging is wrong")
    finally:
        dispatcher.close()
        rt.engine.dispose()
    return {"median": median(times), "min": min(times), "max": max(times), "statements": median(counts)}


def measure(ctx: Context, database: str, sizes: list[int]) -> list[dict]:
    db = ctx.db(database)
    url, pid = with_template(ctx, database, f"idle-{database}", template_course())
    copier = Copier(url, pid, keep=future_only)
    with copier.engine.begin() as c:  # the template's own welcome is due at once: out of the way
        c.execute(sa.text("UPDATE message SET status = 'cancelled', reason = 'staff' "
                          "WHERE status = 'scheduled' AND due_at <= :soon"),
                  {"soon": (T0 + timedelta(hours=1)).replace(tzinfo=None)})
    per_copy = copier.per_copy.get("message", 0)
    check(per_copy > 0, "the template course has no future messages to copy")
    points = []
    try:
        for target in sizes:
            copies = max(0, math.ceil(target / per_copy) - copier.copies)
            start = time.perf_counter()
            copier.add(copies, shift=lambda n: timedelta(hours=n % SPREAD_HOURS))
            fill = time.perf_counter() - start
            if database == "postgresql":
                ctx.pg.analyze(f"idle-{database}")
            future = copier.rows("message", status="scheduled")
            check(future >= target, f"staged {future} future rows, not {target}")
            timed = time_passes(url, ctx, ctx.sizes.idle_passes)
            say(f"  {database}: {future:,} future rows: idle pass {timed['median'] * 1000:.2f} ms "
                f"({timed['statements']:.0f} statements)")
            point = {"target": target, "future_rows": future, "fill_seconds": fill, **timed}
            if database == "sqlite" and copier.rows("message") <= OUTBOX_ROWS_AT_MOST:
                point["outbox_json"] = outbox_json(ctx, url, copier.rows("message"))
            points.append(point)
    finally:
        copier.dispose()
        db.drop(f"idle-{database}")
    return points


def outbox_json(ctx: Context, url: str, rows: int) -> dict:
    """`dripcare outbox --json` of every row, to a file, measured from the outside."""
    ran = cli(ctx.clinic, ctx.workdir, settings(ctx.clinic, url, T0, ctx.workdir / "outbox"), "outbox", "--json",
              what=f"outbox-json-{rows}")
    printed = ran.stdout.count("\n  {")
    check(printed == rows, f"dripcare outbox --json printed {printed} rows of {rows}")
    say(f"  sqlite: dripcare outbox --json of {rows:,} rows: {ran.wall:.1f} s, peak RSS {ran.peak_rss_mib:.0f} MiB")
    return {"rows": rows, "wall": ran.wall, "peak_rss_mib": ran.peak_rss_mib, "bytes": len(ran.stdout)}


def run_workload(ctx: Context) -> dict:
    out = {"passes": ctx.sizes.idle_passes, "sqlite": measure(ctx, "sqlite", ctx.sizes.idle_rows)}
    if ctx.pg:
        out["postgresql"] = measure(ctx, "postgresql", ctx.sizes.pg_idle_rows)
    return out
