"""`--help` in plain words, for every command (SPEC 9 "The CLI is for front-desk staff"): no
type notation, every option and argument described, every id argument saying which command
shows the id, commands grouped in the top-level help, `--version`. Typer and Click are
pinned; this reads their real output at those versions."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
import typer.main

from dripcare.cli import PANELS, app
from tests.support.clihelp import ok

COLUMNS = {"COLUMNS": "80"}
# What Typer 0.29 prints unless told otherwise: `<bool>`, `<list[str]>`, `{PATIENT}`, `[[DIR]]`.
TYPE_NOTATION = re.compile(r"<[a-z][\w\[\], |.]*>|\{[A-Za-z_|]+\}|\[\[|\]\]|list\[")
ID_ARGUMENTS = ("PATIENT", "SESSION", "ENROLLMENT", "MESSAGE", "REPLY")


def command_paths(command=None, path=()) -> list[tuple[tuple[str, ...], object]]:
    """Every command and group under `dripcare`, with its path of names."""
    command = command or typer.main.get_command(app)
    found = [(path, command)] if path else []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += command_paths(sub, (*path, name))
    return found


EVERY = command_paths()


def test_the_pinned_typer_and_click():
    # Help output differs between versions (SPEC 2: upgraded on purpose, never by accident).
    assert (version("typer"), version("click")) == ("0.29.2", "8.5.1")


def test_every_command_is_found():
    names = {path[0] for path, _ in EVERY}
    assert {"patient", "consent", "enroll", "session", "enrollment", "timeline", "outbox", "message", "inbox",
            "replan", "init", "campaigns", "db", "status", "worker", "dispatch", "channel", "web", "demo"} <= names
    assert ("inbox", "handle") in {path for path, _ in EVERY}


@pytest.mark.parametrize("path", [p for p, _ in EVERY] + [()], ids=[" ".join(p) or "dripcare" for p, _ in EVERY] + ["dripcare"])
def test_help_reads_in_plain_words_at_80_columns(cli, path):
    r = ok(cli(*path, "--help", env=COLUMNS))
    assert r.out.strip(), path
    assert not TYPE_NOTATION.search(r.out), (path, TYPE_NOTATION.search(r.out).group(), r.out)
    wide = [line for line in r.out.splitlines() if len(line) > 80]
    assert not wide, wide
    assert "…" not in r.out  # nothing cut off


@pytest.mark.parametrize("path, command", EVERY, ids=[" ".join(p) for p, _ in EVERY])
def test_every_option_and_argument_is_described(path, command):
    assert (command.help or command.short_help or "").strip(), f"{' '.join(path)} has no description"
    for param in command.params:
        if param.name == "help":
            continue
        assert (getattr(param, "help", None) or "").strip(), f"{' '.join(path)}: {param.opts[0]} is not described"
        if param.param_type_name == "argument" and (param.metavar or "").strip("[]") in ID_ARGUMENTS:
            assert "dripcare " in param.help, f"{' '.join(path)} {param.metavar}: say which command shows the id"


def test_top_level_help_groups_the_commands(cli):
    out = ok(cli("--help", env=COLUMNS)).out
    titles = re.findall(r"─ ([A-Z][a-z][^─]*?) ─", out)
    assert titles == ["Options", *PANELS], titles
    assert "─ Commands ─" not in out  # no command left outside a group
    top = {path[0] for path, _ in EVERY}
    placed = {name for names in PANELS.values() for name in names}
    assert top <= placed, top - placed


def test_id_arguments_say_where_the_id_comes_from(cli):
    out = ok(cli("session", "reschedule", "--help", env=COLUMNS)).out
    assert "SESSION" in out and "dripcare timeline" in out
    out = ok(cli("inbox", "handle", "--help", env=COLUMNS)).out
    assert "REPLY" in out and "dripcare inbox" in out


def test_usage_line_has_no_braces_or_double_brackets(cli):
    assert "Usage: dripcare timeline [OPTIONS] PATIENT" in ok(cli("timeline", "--help", env=COLUMNS)).out
    assert "Usage: dripcare init [OPTIONS] [DIR]" in ok(cli("init", "--help", env=COLUMNS)).out


def test_version(cli, tmp_path):
    r = ok(cli("--version"))
    assert r.out.strip() == f"dripcare {version('dripcare')}"
    assert not (tmp_path / "cli.db").exists()
