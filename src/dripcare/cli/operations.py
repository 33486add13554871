"""Running dripcare: the worker, one dispatch pass, status, channel pauses, the demo.
Data is reached through app/ only (import-linter: faces never import the store)."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.table import Table

from dripcare.app import workers
from dripcare.config.logs import counts_text
from dripcare.config.settings import SENDING, Settings, SettingsError
from dripcare.cli.common import (clinic_files_present, console, database, fail, iso, print_json,
                                 runtime, say, settings)

channel_app = typer.Typer(help="Pause or resume a channel for every worker.", no_args_is_help=True)
STATUS_SETTINGS = ("database_url", "clock", "dispatch_interval", "sms_rate", "email_rate")
STOPPED_SHOWN = 10  # the most recent stopped workers listed; the rest are counted


def _checked(*names: str) -> Settings:
    """The settings a command uses, all checked at once: one line per bad one, exit 1."""
    s = settings()
    try:
        s.validate(*names)
    except SettingsError as error:
        fail("\n".join(error.lines))
    return s


def _start_sending(worker_id: str):
    """Settings, the SQLite worker lock, true first log lines, then the database and the
    dispatcher: in that order, so a refusal is one line and the log says what it used
    before anything can fail on the database."""
    from dripcare.app.runtime import build_dispatcher
    from dripcare.config import logs
    from dripcare.worker import announce, guard_fatal_signals

    s = _checked(*SENDING)
    clinic_files_present()  # where there are none, say so before anything (a lock file) is created
    try:
        lock = workers.hold_worker_lock(s.database_url)
    except workers.WorkerLockHeld as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot open the database file at DATABASE_URL: {error.strerror}")
    logs.configure(s.log_format)
    guard_fatal_signals()
    announce(s)
    rt = runtime()
    try:
        return s, lock, rt, build_dispatcher(rt, s, worker_id)
    except SettingsError as error:
        fail(str(error))


def dispatch(once: bool = typer.Option(False, "--once", help="Required: run one pass, then exit (for "
                                       "deployments that start it from cron instead of running the worker).")):
    """Send what is due now: one pass, then exit."""
    if not once:  # a missing option is a usage error (exit 2), as SPEC 9 says
        raise typer.BadParameter("dispatch runs one pass with --once; `dripcare worker` is the long-running "
                                 "scheduler", param_hint="--once")
    _, lock, _, dispatcher = _start_sending(workers.new_worker_id())
    try:
        summary = dispatcher.run_pass()
    finally:
        dispatcher.close()
        workers.let_go(lock)
    console.print("pass: " + (counts_text(summary) or "nothing due"))


def worker():
    """The long-running scheduler (Procfile: worker). Sends what falls due, retries, and
    writes a heartbeat; SIGTERM finishes the sends in flight and exits. On a SQLite
    database only one worker may run; on PostgreSQL any number share one send rate."""
    from dripcare.worker import WorkerProcess

    worker_id = workers.new_worker_id()
    s, lock, rt, dispatcher = _start_sending(worker_id)
    try:
        code = WorkerProcess(rt, s, dispatcher, worker_id).run()
    finally:
        dispatcher.close()
        workers.let_go(lock)
    sys.exit(code)


def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables.")):
    """Workers running or stopped, the queue, the oldest overdue message, paused channels,
    failures, the send rate against what went out in the last minute, refused clinic
    files, and the clock."""
    from dripcare.app.status import Operation, snapshot

    s = _checked(*STATUS_SETTINGS)
    engine, clock = database()
    operation = Operation(rates={"sms": s.sms_rate, "email": s.email_rate}, interval=s.dispatch_interval,
                          clock=s.clock_shown(), speed=getattr(clock, "speed", 1.0))
    snap = snapshot(engine, clock.now(), operation)
    snap["simulated_clock"] = s.now_spec
    if as_json:
        print_json(snap)
        return
    _print_status(snap)


def _print_status(snap: dict) -> None:
    say(f"clock: {snap['clock']}" + (f", now {iso(snap['now'])}" if snap["simulated_clock"] else ""))
    _print_workers(snap["workers"])
    for channel, rate in snap["send_rates"].items():
        say(f"send rate {channel}: {rate['configured_per_second']:g}/s configured for the deployment; "
                      f"{rate['sent_last_minute']} sent in the last minute ({rate['achieved_per_second']:g}/s)")
    q = snap["queue"]
    say("queue: " + (", ".join(f"{n} {s}" for s, n in sorted(q["by_status"].items())) or "empty")
                  + f"; due now: {q['due_now']}")
    if q["oldest_overdue"]:
        o = q["oldest_overdue"]
        say(f"oldest overdue: message {o['id']}, due {iso(o['due_at'])} ({o['minutes']} min ago)")
    for channel, p in snap["paused_channels"].items():
        say(f"paused: {channel} since {iso(p['since'])} until {iso(p['until']) or 'resumed by hand'}: {p['reason']}")
    if snap["failures"]:
        say("failures: " + ", ".join(f"{n} {r}" for r, n in sorted(snap["failures"].items())))
    if snap["carrier_filtered_30007"]:
        say(f"carrier filtering (twilio 30007): {snap['carrier_filtered_30007']}")
    for name, error in snap["campaign_errors"].items():
        say(f"clinic file {name}: last change refused, the last good version is in use: {error}")


def _print_workers(shown: list[dict]) -> None:
    running = [w for w in shown if w["state"] == "running"]
    stopped = [w for w in shown if w["state"] != "running"]
    say(f"workers: {len(running)} running, {len(stopped)} stopped")
    if not shown:
        return
    table = Table("worker", "state", "heartbeat")
    for w in running + stopped[:STOPPED_SHOWN]:
        if w["state"] == "running":
            table.add_row(w["id"], "running", f"{w['heartbeat_age_seconds']:g} s ago")
        elif w["stopped"] == "cleanly":
            table.add_row(w["id"], "stopped", f"stopped cleanly; last at {iso(w['last_heartbeat_at'])}")
        else:
            table.add_row(w["id"], "stopped", f"no heartbeat since {iso(w['last_heartbeat_at'])}")
    console.print(table)
    if len(stopped) > STOPPED_SHOWN:
        say(f"... and {len(stopped) - STOPPED_SHOWN} more stopped (rows are removed after 7 days)")


def _channel_command(pause: bool):
    def command(channel: str = typer.Argument(..., metavar="sms|email", help="The channel: sms or email."),
                reason: Optional[str] = typer.Option(None, "--reason", metavar="WORDS",
                                                     help="Why, shown by dripcare status (default: paused by you)."),
                by: Optional[str] = typer.Option(None, "--by", metavar="NAME",
                                                 help="Who did it (default: your login name).")):
        from dripcare.app import channels
        from dripcare.domain.contacts import CHANNELS
        from dripcare.cli.common import who
        from dripcare.domain.inputs import choice

        name = choice(channel, CHANNELS, "channel")
        _checked("database_url", "clock")
        engine, clock = database()
        if pause:
            channels.pause(engine, name, reason or f"paused by {who(by)}", clock.now())
            console.print(f"{name} paused for every worker until `dripcare channel resume {name}`")
        elif channels.resume(engine, name):
            console.print(f"{name} resumed for every worker")
        else:
            console.print(f"{name} was not paused; nothing changed")

    command.__doc__ = ("Pause a channel for every worker until resumed: nothing is sent on it meanwhile."
                       if pause else "Resume a paused channel now, for every worker.")
    return command


channel_app.command("pause")(_channel_command(True))
channel_app.command("resume")(_channel_command(False))


def demo():
    """A whole course on a virtual clock: sample patients, console transports, no network,
    a throw-away database. Touches nothing of yours."""
    from dripcare.demo import run_demo

    sys.exit(run_demo(console))


def register(app: typer.Typer) -> None:
    app.command("dispatch")(dispatch)
    app.command("worker")(worker)
    app.command("status")(status)
    app.add_typer(channel_app, name="channel")
    app.command("demo")(demo)
