"""Running dripcare: the worker, one dispatch pass, status, channel pauses, the demo."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.table import Table
from sqlmodel import Session

from dripcare.config.logs import counts_text
from dripcare.config.settings import SettingsError
from dripcare.cli.common import console, database, fail, iso, print_json, runtime, settings

channel_app = typer.Typer(help="Pause or resume a channel for every worker.", no_args_is_help=True)


def _dispatcher(rt, worker_id: str):
    from dripcare.app.runtime import build_dispatcher

    try:
        return build_dispatcher(rt, settings(), worker_id)
    except SettingsError as error:
        fail(str(error))


def dispatch(once: bool = typer.Option(False, "--once", help="One pass, then exit (cron-style).")):
    """Send what is due now: one pass, then exit."""
    from dripcare.config import logs
    from dripcare.worker import announce, new_worker_id

    if not once:  # a missing option is a usage error (exit 2), as SPEC 9 says
        raise typer.BadParameter("dispatch runs one pass with --once; `dripcare worker` is the long-running "
                                 "scheduler", param_hint="--once")
    rt = runtime()
    logs.configure(settings().log_format)
    dispatcher = _dispatcher(rt, new_worker_id())
    announce(settings(), dispatcher)
    try:
        summary = dispatcher.run_pass()
    finally:
        dispatcher.close()
    console.print("pass: " + (counts_text(summary) or "nothing due"))


def worker():
    """The long-running scheduler (Procfile: worker). SIGTERM finishes sends in flight."""
    from dripcare.config import logs
    from dripcare.worker import WorkerProcess, announce, new_worker_id

    rt = runtime()
    s = settings()
    try:
        s.dispatch_interval
    except SettingsError as error:
        fail(str(error))
    logs.configure(s.log_format)
    worker_id = new_worker_id()
    dispatcher = _dispatcher(rt, worker_id)
    announce(s, dispatcher)
    code = WorkerProcess(rt, s, dispatcher, worker_id).run()
    dispatcher.close()
    sys.exit(code)


def status(as_json: bool = typer.Option(False, "--json")):
    """Workers, queue depth, oldest overdue, paused channels, failures."""
    from dripcare.app.status import snapshot

    engine, clock = database()
    with Session(engine) as session:
        snap = snapshot(session, clock.now())
    snap["simulated_clock"] = settings().now_spec
    if as_json:
        print_json(snap)
        return
    if snap["simulated_clock"]:
        console.print(f"simulated clock: DRIPCARE_NOW={snap['simulated_clock']} (now {iso(snap['now'])})")
    table = Table("worker", "host", "pid", "heartbeat age (s)")
    for w in snap["workers"]:
        table.add_row(w["id"], w["hostname"], str(w["pid"]), str(w["heartbeat_age_seconds"]))
    console.print(table if snap["workers"] else "workers: none running")
    q = snap["queue"]
    console.print("queue: " + (", ".join(f"{n} {s}" for s, n in sorted(q["by_status"].items())) or "empty")
                  + f"; due now: {q['due_now']}")
    if q["oldest_overdue"]:
        o = q["oldest_overdue"]
        console.print(f"oldest overdue: message {o['id']}, due {iso(o['due_at'])} ({o['minutes']} min ago)")
    for channel, p in snap["paused_channels"].items():
        console.print(f"paused: {channel} since {iso(p['since'])} until {iso(p['until']) or 'resumed by hand'}: {p['reason']}")
    if snap["failures"]:
        console.print("failures: " + ", ".join(f"{n} {r}" for r, n in sorted(snap["failures"].items())))
    if snap["carrier_filtered_30007"]:
        console.print(f"carrier filtering (twilio 30007): {snap['carrier_filtered_30007']}")
    for campaign, error in snap["campaign_errors"].items():
        console.print(f"campaign {campaign}: last change refused: {error}")


def _channel_command(pause: bool):
    def command(channel: str = typer.Argument(..., metavar="sms|email"),
                reason: Optional[str] = typer.Option(None, "--reason"), by: Optional[str] = typer.Option(None, "--by")):
        from dripcare.store import channels
        from dripcare.store.db import transaction
        from dripcare.domain.inputs import choice
        from dripcare.cli.common import who

        name = choice(channel, ("sms", "email"), "channel")
        engine, clock = database()
        with transaction(engine) as session:
            if pause:
                channels.pause(session, name, reason or f"paused by {who(by)}", clock.now(), None)
            else:
                channels.resume(session, name)
        console.print(f"{name} {'paused' if pause else 'resumed'} for every worker")

    command.__doc__ = "Pause a channel until resumed." if pause else "Resume a paused channel now."
    return command


channel_app.command("pause")(_channel_command(True))
channel_app.command("resume")(_channel_command(False))


def demo():
    """A whole course on a virtual clock: sample patients, console transports, no network."""
    from dripcare.demo import run_demo

    sys.exit(run_demo(console))


def register(app: typer.Typer) -> None:
    app.command("dispatch")(dispatch)
    app.command("worker")(worker)
    app.command("status")(status)
    app.add_typer(channel_app, name="channel")
    app.command("demo")(demo)
