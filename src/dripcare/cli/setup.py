"""Setting up: the example files for a new clinic, the database schema, the campaigns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from dripcare.app.wording import CHANNEL_WORD, step_words
from dripcare.cli.common import clinic_and_campaigns, clinic_files_present, console, fail, say, settings, table

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
campaigns_app = typer.Typer(help="The campaigns in config/campaigns.", no_args_is_help=True)


def init(directory: Optional[Path] = typer.Argument(None, metavar="DIR",
                                                    help="The folder to write into (default: this one).")):
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
    from dripcare.app.schema import DatabaseUnavailable, upgraded
    from dripcare.config.settings import SettingsError

    clinic_files_present()
    try:
        upgraded(settings())
    except (SettingsError, DatabaseUnavailable) as error:
        fail(str(error))
    say("database is up to date")


COURSE_END = {"last_booked": "course-end steps follow the last booked session",
              "on_complete": "course-end steps wait for dripcare enrollment complete"}


@campaigns_app.command("list")
def campaigns_list():
    """Every campaign: its id, name, steps and channels."""
    _, campaigns = clinic_and_campaigns()
    if not campaigns:
        say("no campaigns in config/campaigns")
        return
    grid = table("id", "name", "steps", "channels", wide=("id", "name"))
    for c in campaigns.values():
        grid.add_row(c.id, c.name, str(len(c.steps)), ", ".join(CHANNEL_WORD[ch] for ch in c.channels))
    console.print(grid)


@campaigns_app.command("show")
def campaigns_show(campaign_id: str = typer.Argument(..., metavar="ID",
                                                     help="The campaign id, shown by dripcare campaigns list.")):
    """One campaign's steps in words: when each goes out, on which channels, until when."""
    _, campaigns = clinic_and_campaigns()
    campaign = campaigns.get(campaign_id)
    if campaign is None:
        fail(f"campaign {campaign_id!r} not found (known: {', '.join(sorted(campaigns)) or 'none'})")
    say(f"{campaign.id}: {campaign.name}; {COURSE_END.get(campaign.course_end, campaign.course_end)}")
    for s in campaign.steps:
        say(f"  {s.id}: {step_words(s)}")
