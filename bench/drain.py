"""Workload 3, drain: the backlog after an outage, N messages due at once (welcome SMS
and emails of N/2 patients), sent end to end by the real dispatcher in a process of its
own (claim, the check at send time, render, send, record) with the rate out of the way,
through the file transport and through a transport that does nothing. The bound: the
same rows simply updated to `sent` in one transaction (and with the three events a send
writes: claimed, attempt, sent)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

import profiles
from clinic import T0, settings
from measure import PYTHON, check, clean_env, last_json, run, say
from run_context import Context
from staging import Copier, due_messages, with_template

OUT_OF_THE_WAY = "1000000"  # DRIPCARE_SMS_RATE / DRIPCARE_EMAIL_RATE: the rate never waits
CHILD = str(Path(__file__).with_name("drain_child.py"))


def stage(ctx: Context, database: str, messages: int) -> str:
    """A staged database named drain-<database> with `messages` due at T0."""
    name = f"drain-{database}"
    url, pid = with_template(ctx, database, name, [])
    copier = Copier(url, pid)
    per_copy = copier.per_copy.get("message", 0)
    check(per_copy, "the template patient has no message due at enrollment")
    start = time.perf_counter()
    copier.add(max(0, -(-messages // per_copy) - 1))
    copier.dispose()
    due = due_messages(url)
    check(due >= messages, f"staged {due} due messages, not {messages}")
    if database == "postgresql":
        ctx.pg.analyze(name)
    say(f"  {database}: staged {due:,} messages due at once in {time.perf_counter() - start:.1f} s")
    return name


def bound(ctx: Context, database: str, staged: str, events: bool) -> dict:
    """The same rows updated to sent in one transaction, with dripcare's own engine settings."""
    from dripcare.config.settings import Settings
    from dripcare.store.db import make_engine

    db = ctx.db(database)
    name = f"drain-bound-{database}"
    url = db.copy(staged, name)
    engine = make_engine(Settings({"DATABASE_URL": url}).database_url)
    now = (T0 + timedelta(minutes=1)).replace(tzinfo=None)
    try:
        start = time.perf_counter()
        with engine.begin() as c:
            ids = "SELECT id FROM message WHERE status = 'scheduled' AND due_at <= :now"
            if events:
                for kind, status in (("claimed", "sending"), ("attempt", "sending"), ("sent", "sent")):
                    c.execute(sa.text(f"INSERT INTO message_event (message_id, at, kind, status) "
                                      f"SELECT id, :now, '{kind}', '{status}' FROM message WHERE id IN ({ids})"),
                              {"now": now})
            updated = c.execute(sa.text("UPDATE message SET status = 'sent', sent_at = :now, updated_at = :now, "
                                        "attempts = attempts + 1, provider_id = 'bound-' || id "
                                        f"WHERE id IN ({ids})"), {"now": now}).rowcount
        seconds = time.perf_counter() - start
    finally:
        engine.dispose()
        db.drop(name)
    return {"rows": updated, "seconds": seconds, "per_second": updated / seconds, "events": events}


def best_bound(ctx: Context, database: str, staged: str, events: bool) -> dict:
    """The median of a few bound runs, each on a fresh copy."""
    runs = sorted((bound(ctx, database, staged, events) for _ in range(ctx.sizes.bound_repeats)),
                  key=lambda r: r["seconds"])
    return {**runs[len(runs) // 2], "repeats": len(runs)}


def sent_in(url: str) -> dict:
    from databases import engine_for

    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return dict(c.execute(sa.text("SELECT status, count(*) FROM message GROUP BY status")).all())
    finally:
        engine.dispose()


def file_lines(outbox: Path) -> tuple[int, int]:
    """(lines written, distinct message ids) across sms.jsonl and email.jsonl."""
    ids, lines = set(), 0
    for path in outbox.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            lines += 1
            ids.add(json.loads(line)["message_id"])
    return lines, len(ids)


def stall(ctx: Context) -> str:
    return "5" if ctx.quick else "15"


def drain_env(ctx: Context, url: str, outbox: Path) -> dict[str, str]:
    return clean_env(settings(ctx.clinic, url, T0 + timedelta(minutes=1), outbox, DRIPCARE_SMS_RATE=OUT_OF_THE_WAY,
                              DRIPCARE_EMAIL_RATE=OUT_OF_THE_WAY))


def one_drain(ctx: Context, database: str, staged: str, transport: str, seconds: float):
    """(what the child said, the process, statuses after, file lines) of one drain on a copy."""
    db = ctx.db(database)
    name = f"drain-{database}-{transport}"
    url = db.copy(staged, name)
    outbox = ctx.workdir / f"outbox-{name}"
    try:
        ran = run([PYTHON, CHILD, "--transport", transport, "--seconds", str(seconds), "--stall", stall(ctx)],
                  env=drain_env(ctx, url, outbox),
                  cwd=ctx.workdir, log=ctx.workdir / f"{name}.log", timeout=seconds + 600, what=f"drain {name}")
        child = last_json(ran.stdout)
        return child, ran, sent_in(url), (file_lines(outbox) if transport == "file" else None)
    finally:
        db.drop(name)


def profile_drain(ctx: Context, database: str, staged: str, seconds: float) -> dict:
    """The file-transport drain under py-spy, for `seconds` of steady sending."""
    db = ctx.db(database)
    name = f"drain-{database}-profile"
    url = db.copy(staged, name)
    try:
        cmd = [PYTHON, CHILD, "--transport", "file", "--seconds", str(seconds), "--stall", stall(ctx)]
        env = drain_env(ctx, url, ctx.workdir / f"outbox-{name}")
        stacks = profiles.record(cmd, env=env, cwd=ctx.workdir, name=name)
        child = last_json((ctx.workdir / f"{name}.py-spy.out").read_text())
        sent = sent_in(url).get("sent", 0)
        return {"sent": sent, "seconds": child["seconds"], "per_message": profiles.per_unit(child["counted"], sent),
                **profiles.summarize(stacks)}
    finally:
        db.drop(name)


def measure(ctx: Context, database: str) -> dict:
    messages, cap = ctx.sizes.drain_messages, ctx.sizes.drain_seconds
    staged = stage(ctx, database, messages)
    out = {"messages": due_messages(ctx.db(database).url(staged)), "cap_seconds": cap, "runs": [],
           "bounds": [best_bound(ctx, database, staged, events) for events in (False, True)]}
    for transport in ctx.sizes.drain_transports:
        out["runs"].append(drained(ctx, database, transport, *one_drain(ctx, database, staged, transport, cap)))
    if f"drain-{database}" in ctx.sizes.profiles:
        say(f"  {database}: profile of the file-transport drain (py-spy) ...")
        out["profile"] = profile_drain(ctx, database, staged, ctx.sizes.profile_drain_seconds)
    ctx.db(database).drop(staged)
    return out


def drained(ctx: Context, database: str, transport: str, child: dict, ran, statuses: dict, lines) -> dict:
    """One drain's row: `sent` from the database (the passes' own count is kept beside it)."""
    sent = statuses.get("sent", 0)
    row = {"transport": transport, "sent": sent, "statuses": statuses, "seconds": child["seconds"],
           "per_second": sent / child["seconds"], "peak_rss_mib": ran.peak_rss_mib,
           "cpu_ms_per_message": 1000 * child["cpu"] / sent if sent else None,
           "stopped_by_cap": child["stopped_by_cap"], "stalled": child.get("stalled", False),
           "summary": child["summary"], "counted": child["counted"],
           "per_message": profiles.per_unit(child["counted"], sent)}
    if lines is not None:
        row["file_lines"], row["file_distinct"] = lines
        check(lines[0] >= sent, f"the file transport wrote {lines[0]} lines for {sent} sent messages")
    say(f"  {database}, {transport} transport: {sent:,} sent in {child['seconds']:.1f} s = "
        f"{row['per_second']:,.0f}/s, peak RSS {ran.peak_rss_mib:.0f} MiB"
        + (" (stopped at the cap)" if child["stopped_by_cap"] else "")
        + (" (stopped: nothing more was sent)" if row["stalled"] else ""))
    return row


def run_workload(ctx: Context) -> dict:
    out = {"sqlite": measure(ctx, "sqlite")}
    if ctx.pg:
        out["postgresql"] = measure(ctx, "postgresql")
    return out
