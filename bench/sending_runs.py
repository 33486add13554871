"""What the provider-bound and scale-out workloads share: SMS staged for sending, real
`dripcare worker` processes with the real TwilioSms transport pointed at the loopback
provider, and what the provider saw (its arrivals are the measure: a worker's start-up
and shutdown are not in them)."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

import profiles
from clinic import T0, settings
from databases import engine_for
from measure import DRIPCARE, Process, check, clean_env, rate_between, say, wait_for, window_max
from provider import LoopbackTwilio
from run_context import Context
from staging import Copier, due_messages, with_template
from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

STALL = 20.0  # seconds without a new request once the workers are up: they have stopped sending (quick: 5)
START_UP = 120.0  # seconds a worker may take to start on a busy machine


def stage_sms(ctx: Context, database: str, messages: int) -> str:
    """A staged database `send-<database>` with `messages` welcome SMS due at T0 (and nothing else)."""
    name = f"send-{database}"
    url, pid = with_template(ctx, database, name, [])
    copier = Copier(url, pid, keep=lambda table, row: table != "message" or row["channel"] == "sms")
    copier.add(max(0, messages - copier.per_copy.get("message", 0)))
    copier.dispose()
    engine = engine_for(url)
    with engine.begin() as c:  # the template's own welcome email: not this workload's
        c.execute(sa.text("UPDATE message SET status = 'cancelled', reason = 'staff' "
                          "WHERE status = 'scheduled' AND channel <> 'sms'"))
    engine.dispose()
    check(due_messages(url) >= messages, f"staged fewer than {messages} SMS")
    if database == "postgresql":
        ctx.pg.analyze(name)
    return name


def rate_setting(rate: float) -> str:
    return f"{rate:.0f}" if float(rate).is_integer() else f"{rate:g}"


def worker_env(ctx: Context, url: str, provider: LoopbackTwilio, name: str, **more: str) -> dict[str, str]:
    return clean_env(settings(
        ctx.clinic, url, T0 + timedelta(minutes=1), ctx.workdir / f"outbox-{name}",
        DRIPCARE_SMS_TRANSPORT="twilio", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=FROM_NUMBER, TWILIO_API_BASE_URL=provider.url,
        # Only so each request carries its message id (StatusCallback ?m=): nothing calls it back.
        DRIPCARE_PUBLIC_BASE_URL="https://callbacks.bench.invalid", DRIPCARE_SECRET_KEY="bench-" + "k" * 32,
        **more))


@dataclass
class Seen:
    """One run as the provider saw it, and as the database recorded it."""

    arrivals: list[tuple[float, str, int]]
    statuses: dict[str, int]
    sent_by_worker: dict[str, int]
    workers: list[dict]
    finished: bool
    profile: dict | None = None

    @property
    def requests(self) -> int:
        return len(self.arrivals)

    def summary(self, rate: float | None = None) -> dict:
        times = [a[0] for a in self.arrivals]
        ids = [a[1] for a in self.arrivals]
        return {"requests": self.requests, "distinct_messages": len(set(ids)),
                "duplicates": len(ids) - len(set(ids)), "refused_429": sum(1 for a in self.arrivals if a[2] == 429),
                "per_second": rate_between(times), "busiest_second": window_max(times),
                "over_rate": bool(rate is not None and window_max(times) > rate),
                "statuses": self.statuses, "sent_by_worker": self.sent_by_worker, "processes": self.workers,
                "finished": self.finished}


def send_with_workers(ctx: Context, url: str, name: str, expected: int, count: int, provider_args: list[str],
                      profile_seconds: float = 0.0, **env: str) -> Seen:
    """Start the provider and `count` workers, wait until `expected` requests arrived (or
    the workers stall), stop the workers as an operator does (SIGTERM), read the results."""
    provider = LoopbackTwilio(ctx.workdir, name, *provider_args)
    workers: list[Process] = []
    profile = None
    try:
        for k in range(count):
            workers.append(Process([DRIPCARE, "worker"], env=worker_env(ctx, url, provider, name, **env),
                                   cwd=ctx.workdir, log=ctx.workdir / f"worker-{name}-{k}.log"))
        if profile_seconds:
            profile = profile_worker(ctx, provider, workers[0], url, name, profile_seconds)
        finished = wait_for_requests(provider, expected, workers, url, 5.0 if ctx.quick else STALL)
    finally:
        for w in workers:
            w.signal(signal.SIGTERM)
        ended = [w.wait(60) for w in workers]
        arrivals = provider.arrivals() if provider.process.running() else []
        provider.stop()
    for w, ran in zip(workers, ended):
        check(ran.code in (0, -signal.SIGTERM), f"a worker exited {ran.code}: {w.log}\n{ran.tail()}")
    if not arrivals:  # the product's outcome, not the benchmark's: reported, with the worker's last words
        say(f"    nothing reached the provider; {workers[0].log.name} ends:\n{ended[0].tail(4)}")
    statuses, by_worker = outcome(url)
    return Seen(arrivals, statuses, by_worker,
                [{"peak_rss_mib": r.peak_rss_mib, "cpu": r.cpu, "code": r.code} for r in ended], finished, profile)


def profile_worker(ctx: Context, provider: LoopbackTwilio, worker: Process, url: str, name: str,
                   seconds: float) -> dict | None:
    """py-spy on the worker from its first request on (or, when none comes, from a few
    seconds after it started: then the profile shows what it does instead of sending)."""
    wait_for(lambda: started(url) > 0 or not worker.running(), START_UP)
    wait_for(lambda: provider.count() > 0 or not worker.running(), 5.0)
    if not worker.running():
        return None
    stacks = profiles.attach(worker.popen.pid, seconds, env=clean_env({}), cwd=ctx.workdir, name=f"{name}-profile")
    return profiles.summarize(stacks)


def wait_for_requests(provider: LoopbackTwilio, expected: int, workers: list[Process], url: str,
                      stall: float) -> bool:
    """Until `expected` requests arrived; False when the workers stopped sending (nothing
    new for `stall` seconds once every worker is up) or died."""
    up = wait_for(lambda: started(url) >= len(workers) or not all(w.running() for w in workers), START_UP)
    last, changed = -1, time.monotonic()
    while up:
        seen = provider.count()
        if seen >= expected:
            return True
        if seen != last:
            last, changed = seen, time.monotonic()
        if time.monotonic() - changed > stall or not any(w.running() for w in workers):
            break
        time.sleep(0.25)
    say(f"    stopped waiting: {provider.count()} of {expected} requests arrived")
    return False


def started(url: str) -> int:
    """Workers that have registered (their first heartbeat) and not stopped."""
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM worker WHERE stopped_at IS NULL")).scalar_one()
    except sa.exc.OperationalError:
        return 0
    finally:
        engine.dispose()


def outcome(url: str) -> tuple[dict[str, int], dict[str, int]]:
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            statuses = dict(c.execute(sa.text("SELECT status, count(*) FROM message WHERE channel = 'sms' "
                                              "GROUP BY status")).all())
            by_worker = dict(c.execute(sa.text("SELECT claimed_by, count(*) FROM message WHERE status = 'sent' "
                                               "GROUP BY claimed_by")).all())
    finally:
        engine.dispose()
    return statuses, {str(k): v for k, v in by_worker.items()}
