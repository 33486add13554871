"""Workload 5, scale-out on PostgreSQL: 1, 2 and 4 `dripcare worker` processes sharing
one outbox and one rate, against a 50 ms loopback provider, the rate out of the way.
Throughput (as the provider saw it) and duplicates (a message id the provider got twice)."""

from __future__ import annotations

from measure import say
from run_context import Context
from sending_runs import rate_setting, send_with_workers, stage_sms

LATENCY = ["--latency", "0.05"]


def run_workload(ctx: Context) -> dict:
    if ctx.pg is None:
        return {"skipped": "no PostgreSQL server"}
    messages = ctx.sizes.scale_messages
    staged = stage_sms(ctx, "postgresql", messages)
    rate = ctx.sizes.scale_rate
    out = {"messages": messages, "latency": 0.05, "concurrency": 8, "rate": rate, "runs": []}
    settings = {"DRIPCARE_SMS_RATE": rate_setting(rate), "DRIPCARE_SEND_CONCURRENCY": "8"}
    for count in ctx.sizes.scale_workers:
        name = f"scale-{count}"
        url = ctx.pg.copy(staged, name)
        seen = send_with_workers(ctx, url, name, messages, count, LATENCY, **settings)
        row = {"workers": count, **seen.summary()}
        say(f"  {count} worker(s): {row['requests']:,} requests at {row['per_second']:.0f}/s, "
            f"{row['duplicates']} duplicates")
        out["runs"].append(row)
        ctx.pg.drop(name)
    if "scale" in ctx.sizes.profiles:  # a run of its own: py-spy slows what it samples
        count, name = max(ctx.sizes.scale_workers), "scale-profile"
        url = ctx.pg.copy(staged, name)
        seen = send_with_workers(ctx, url, name, messages, count, LATENCY, profile_seconds=10.0, **settings)
        if seen.profile:
            out["profile"] = {"workers": count, "apart": True, **seen.profile}
        ctx.pg.drop(name)
    ctx.pg.drop(staged)
    return out
