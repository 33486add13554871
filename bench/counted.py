"""The real `dripcare` command, with every SQL statement and transaction counted:

    python bench/counted.py COUNTS.json import FILE.csv

The counts (by statement kind, executemany batches and their rows, commits) are written
to COUNTS.json when the command ends, whatever its exit."""

from __future__ import annotations

import atexit
import json
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine


def count_statements(target) -> Counter:
    """Every statement and commit of `target` (one engine, or the Engine class: all of them)
    counted by kind, with executemany batches and their rows."""
    counted: Counter = Counter()

    @event.listens_for(target, "before_cursor_execute")
    def executed(_conn, _cursor, statement, parameters, _context, executemany):
        counted["statements"] += 1
        counted["executemany" if executemany else "single"] += 1
        if executemany:
            counted["executemany_rows"] += len(parameters)
        counted[statement.lstrip().split(None, 1)[0].upper()] += 1

    @event.listens_for(target, "commit")
    def committed(_conn):
        counted["transactions"] += 1

    return counted


def main() -> None:
    out = Path(sys.argv[1])
    counted = count_statements(Engine)
    atexit.register(lambda: out.write_text(json.dumps(dict(counted))))
    from dripcare.cli import main as dripcare

    dripcare(sys.argv[2:])


if __name__ == "__main__":
    main()
