"""Setting up: the example files for a new clinic, the database schema, the campaigns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dripcare.cli.common import clinic_and_campaigns, console, fail, settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
campaigns_app = typer.Typer(help="The campaigns in config/campaigns.", no_args_is_help=True)


def init(directory: Optional[Path] = typer.Argument(None, metavar="[DIR]", help="Where to write (default: here).")):
    """Write the example config/ and messages/ for a new clinic to edit."""
    target = directory or Path.cwd()
    existing = [name for name in ("config", "messages") if (target / name).exists()]
    if existing:
        fail(f"{target / existing[0]} already exists; init never overwrites a clinic's files (pick an empty DIR)")
    try:
        for name in ("config", "messages"):
            shutil.copytree(EXAMPLES / name, target / name)
    except OSError as error:
        fail(f"cannot write to {target}: {error.strerror}")
    example_env = EXAMPLES / "env.example"
    if example_env.is_file() and not (target / ".env.example").exists():
        shutil.copy(example_env, target / ".env.example")
    console.print(f"wrote {target / 'config'} and {target / 'messages'}: edit config/clinic.toml first")


@db_app.command("upgrade")
def db_upgrade():
    """Create or upgrade the database schema (Procfile: release)."""
    from dripcare.store.db import make_engine, upgrade

    try:
        upgrade(make_engine(settings().database_url))
    except Exception as error:
        fail(f"cannot upgrade the database: {type(error).__name__}: {str(error).splitlines()[0]}")
    console.print("database is up to date")


@campaigns_app.command("list")
def campaigns_list():
    """Every campaign and its steps count."""
    _, campaigns = clinic_and_campaigns()
    table = Table("id", "name", "steps", "channels", "course end")
    for c in campaigns.values():
        table.add_row(c.id, c.name, str(len(c.steps)), ", ".join(c.channels), c.course_end)
    console.print(table)


@campaigns_app.command("show")
def campaigns_show(campaign_id: str = typer.Argument(..., metavar="ID")):
    """One campaign's steps: anchor, offset, time of day, channels, priority, expiry."""
    _, campaigns = clinic_and_campaigns()
    campaign = campaigns.get(campaign_id)
    if campaign is None:
        fail(f"campaign {campaign_id!r} not found (known: {', '.join(sorted(campaigns)) or 'none'})")
    console.print(f"{campaign.id}: {campaign.name} (course end: {campaign.course_end})")
    table = Table("step", "anchor", "offset", "at", "channels", "priority", "expires", "when")
    for s in campaign.steps:
        offset = f"{s.offset.days:+d}d" if s.offset.days else ""
        offset += f"{'-' if s.offset.elapsed.total_seconds() < 0 else '+'}{abs(s.offset.elapsed)}" if s.offset.elapsed or not offset else ""
        expires = s.expires if isinstance(s.expires, str) else (str(s.expires) if s.expires else "default")
        table.add_row(s.id, s.anchor, offset, s.at.strftime("%H:%M") if s.at else "", ", ".join(s.channels),
                      str(s.priority), expires, s.when)
    console.print(table)
