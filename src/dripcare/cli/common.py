"""What every command group shares: settings, the clinic's files, the database, one-line
errors, the screen's width, and how a change tells staff what it did."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dripcare.app import wording
from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import Clinic, ConfigError, load_clinic
from dripcare.config.settings import Settings, SettingsError
from dripcare.domain.campaign import Campaign

# Width is set for each run (`fit_screen`): a terminal's own, COLUMNS, else 80.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Options every command group words the same way.
By = typer.Option(None, "--by", metavar="NAME", help="Who is doing this (default: your login name).")
Json = typer.Option(False, "--json", help="Print one JSON document instead of text.")


def screen_width() -> int:
    """COLUMNS when set, a terminal's width, or 80 when output goes to a file or a pipe."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return 80


def fit_screen() -> None:
    for each in (console, err_console):
        each.width = screen_width()


def fail(message: str) -> NoReturn:
    """One line per problem (settings name every bad one at once), then exit 1."""
    for line in message.splitlines() or [""]:
        err_console.print(f"error: {line}", markup=False, soft_wrap=True)
    sys.exit(1)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


def clinic_files_present() -> None:
    """Every command but init and demo works on a clinic's files: where there are none it
    says so before anything is opened, so nothing (no dripcare.db) is created."""
    try:
        config_dir = settings().config_dir
    except SettingsError as error:
        fail(str(error))
    if not (config_dir / "clinic.toml").is_file():
        fail(f"no clinic files here ({config_dir / 'clinic.toml'} not found); run `dripcare init` to write "
             f"them, or set DRIPCARE_CONFIG_DIR to the clinic's config folder")


def clinic_and_campaigns() -> tuple[Clinic, dict[str, Campaign]]:
    clinic_files_present()
    s = settings()
    try:
        clinic = load_clinic(s.config_dir)
        return clinic, load_campaigns(s.config_dir, clinic, s.messages_dir)
    except (ConfigError, SettingsError) as error:
        fail(str(error))


def who(by: str | None) -> str:
    """Who did it: --by, else the OS user."""
    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(document) -> None:
    sys.stdout.write(json.dumps(document, default=_default, indent=2, ensure_ascii=False) + "\n")


def stream_json(documents: Iterable[dict]) -> None:
    """One JSON list, written as each object is read: a long listing never sits in memory."""
    out = sys.stdout
    out.write("[")
    for n, document in enumerate(documents):
        out.write(("," if n else "") + "\n  " + json.dumps(document, default=_default, ensure_ascii=False))
    out.write("\n]\n")


def database():
    """The engine (schema checked) and the clock, for commands that need no campaign files:
    `status` must answer even while a campaign file is broken."""
    from dripcare.app.schema import DatabaseUnavailable, opened

    clinic_files_present()
    try:
        return opened(settings())
    except (SettingsError, DatabaseUnavailable) as error:
        fail(str(error))


def runtime():
    """Settings, database (schema checked), clinic files and the clock, or one error line."""
    from dripcare.app.runtime import open_runtime

    engine, clock = database()
    try:
        return open_runtime(settings(), engine=engine, clock=clock)
    except (ConfigError, SettingsError) as error:
        fail(str(error))


def local(instant: datetime | None, tz_name: str) -> str:
    """A UTC instant as the patient reads it: `Wed 9 Jun 2027 10:00 MDT`."""
    return wording.when(instant, tz_name)


def iso(instant: datetime | None, tz_name: str | None = None) -> str | None:
    """ISO 8601 with offset, in the patient's zone when given."""
    if instant is None:
        return None
    from dripcare.domain.timing import zone

    return (instant.astimezone(zone(tz_name)) if tz_name else instant).isoformat()


def table(*headers: str, wide: Iterable[str] = ()) -> Table:
    """A table that fits the screen: columns in `wide` fold their long values over lines;
    the others keep their width (a value is never cut off without a fold)."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, pad_edge=False)
    for header in headers:
        grid.add_column(header, overflow="fold", no_wrap=header not in wide)
    return grid


def say(line: str) -> None:
    """A line of output that wraps at the screen's width, markup-free (values are the clinic's)."""
    console.print(line, markup=False)


def say_effect(effect, *, json_document: dict | None = None) -> None:
    """What a change did: counts per channel, the next message, and every note."""
    if json_document is not None:
        json_document["effect"] = effect.as_dict()
        nxt = json_document["effect"]["next_message"]
        if nxt is not None:
            nxt["at"] = iso(nxt["at"], effect.timezone)
        print_json(json_document)
        return
    say(f"messages: {changes_line(effect)}")
    nxt = effect.next_message
    say(f"next message: {local(nxt.at, effect.timezone)}, {wording.CHANNEL_WORD[nxt.channel]} "
        f"({nxt.step})" if nxt else "next message: none planned")
    for note in effect.notes:
        say(f"note: {note}")


def changes_line(effect) -> str:
    parts = []
    for word, counts in (("planned", effect.planned), ("moved", effect.moved),
                         ("cancelled", effect.cancelled), ("skipped", effect.skipped)):
        if sum(counts.values()):
            parts.append(f"{sum(counts.values())} {word} ({wording.per_channel(counts)})")
    if not parts:
        return "no change"
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(effect.reasons.items()))
    return "; ".join(parts) + (f"; why: {reasons}" if reasons else "")


class ProgressBar:
    """A bar on the terminal for work that takes a while (an import, a replan of every
    patient); `progress_bar()` gives none when output is not a terminal (piped, logged, tested)."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.tasks: dict[str, int] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=console, transient=True)
            self.bar.start()
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def progress_bar() -> ProgressBar | None:
    return ProgressBar() if console.is_terminal else None
