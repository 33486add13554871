"""Small checks on a `cli` fixture result, shared by the CLI-level test modules."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def ok(r):
    assert r.code == 0, (r.code, r.out, r.err)
    return r


def js(r):
    return json.loads(ok(r).out)


def one_line(r, code: int = 1) -> str:
    """The one error line of a refused command."""
    assert r.code == code, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


def dump(path: Path) -> dict:
    """Every row of every table: the strictest "nothing written"."""
    with sqlite3.connect(path) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: connection.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}


def notes(r) -> list[str]:
    """The `note:` lines of a change (they come last), each joined back into one line: the
    screen's width wraps them."""
    return [part.strip() for part in " ".join(ok(r).out.split()).split("note: ")[1:]]


def said(r) -> str:
    """What a command printed, as one line of words (wrapping undone)."""
    return " ".join(ok(r).out.split())
