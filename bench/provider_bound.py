"""Workload 4, provider-bound: one `dripcare worker` on SQLite sending SMS through the
real TwilioSms transport to a loopback provider that answers after 100 ms (and a variant
with 50-200 ms of jitter and 1% of 429s), at DRIPCARE_SMS_RATE=50 with 1, 8 and 32 sends
in flight. Achieved against min(rate, concurrency / latency); the busiest one-second
window the provider saw against the rate."""

from __future__ import annotations

from clinic import T0  # noqa: F401  (the staged rows are due at T0)
from measure import say
from run_context import Context
from sending_runs import rate_setting, send_with_workers, stage_sms
from staging import keep_only

VARIANTS = {
    "fixed": {"latency": 0.100, "args": ["--latency", "0.1"], "label": "100 ms"},
    "jitter": {"latency": 0.125, "args": ["--jitter", "0.05", "0.2", "--error-rate", "0.01"],
               "label": "50-200 ms, 1% 429"},
}


def runs(ctx: Context) -> list[tuple[str, int, float, int]]:
    """(variant, concurrency, bound, messages) for every run."""
    rate = ctx.sizes.provider_rate
    out = []
    for variant in ctx.sizes.provider_variants:
        for concurrency in ctx.sizes.provider_concurrency:
            bound = min(rate, concurrency / VARIANTS[variant]["latency"])
            out.append((variant, concurrency, bound, max(20, round(bound * ctx.sizes.provider_seconds))))
    return out


def run_workload(ctx: Context) -> dict:
    plan = runs(ctx)
    staged = stage_sms(ctx, "sqlite", max(n for *_, n in plan))
    rate = ctx.sizes.provider_rate
    out = {"rate": rate, "variants": {k: v["label"] for k, v in VARIANTS.items()}, "runs": []}
    for variant, concurrency, bound, messages in plan:
        name = f"provider-{variant}-{concurrency}"
        url = ctx.sqlite.copy(staged, name)
        keep_only(url, messages)
        seen = send_with_workers(ctx, url, name, messages, 1, VARIANTS[variant]["args"],
                                 DRIPCARE_SMS_RATE=rate_setting(rate), DRIPCARE_SEND_CONCURRENCY=str(concurrency))
        row = {"variant": variant, "latency": VARIANTS[variant]["latency"], "concurrency": concurrency,
               "messages": messages, "bound": bound, **seen.summary(rate)}
        row["of_bound"] = row["per_second"] / bound
        if "provider" in ctx.sizes.profiles and variant == "fixed" and concurrency == 1:
            # Profiled in a run of its own: py-spy slows what it samples, and this run is judged.
            profiled = f"{name}-profile"
            url = ctx.sqlite.copy(staged, profiled)
            keep_only(url, messages)
            again = send_with_workers(ctx, url, profiled, messages, 1, VARIANTS[variant]["args"],
                                      profile_seconds=min(10.0, messages / bound / 2),
                                      DRIPCARE_SMS_RATE=rate_setting(rate), DRIPCARE_SEND_CONCURRENCY="1")
            if again.profile:
                out["profile"] = {"variant": variant, "concurrency": concurrency, "apart": True, **again.profile}
            ctx.sqlite.drop(profiled)
        say(f"  {VARIANTS[variant]['label']}, concurrency {concurrency}: {row['per_second']:.1f}/s of "
            f"{bound:g}/s ({row['of_bound']:.0%}); busiest second {row['busiest_second']} (rate {rate:g})")
        out["runs"].append(row)
        ctx.sqlite.drop(name)
    ctx.sqlite.drop(staged)
    return out
