"""Many rows into one table in one statement, with their ids (an import writes thousands),
and many ids read back in slices that fit one statement.

SQLite runs `INSERT ... RETURNING` with `sort_by_parameter_order` as one statement per row;
instead, the ids after the largest are named here: every SQLite transaction holds the write
lock from its start (BEGIN IMMEDIATE, `store/db.py`), so nobody else can take them. On
PostgreSQL the ids are drawn from the table's own sequence in one statement (others may
draw theirs meanwhile: a sequence never gives one twice), then the rows go in a plain
executemany. INSERT ... RETURNING of many rows is rendered as one long statement per
thousand rows, which the driver parses afresh each time (it caches short ones only):
half of a large import's time on PostgreSQL went there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlmodel import Session

IN_LIMIT = 500  # values per IN (...): well inside every SQLite build's limit on bound parameters


def in_slices(values: Iterable) -> Iterator[list]:
    """`values`, each once and in order, in slices of at most IN_LIMIT for `IN (...)`."""
    values = list(dict.fromkeys(values))
    for start in range(0, len(values), IN_LIMIT):
        yield values[start:start + IN_LIMIT]


def insert_with_ids(session: Session, table: sa.Table, rows: list[dict]) -> list[int]:
    """The ids of `rows`, inserted in one statement, in their order."""
    if not rows:
        return []
    if session.bind.dialect.name == "sqlite":
        first = (session.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
        ids = list(range(first, first + len(rows)))
    else:
        sequence = sa.func.pg_get_serial_sequence(table.name, "id")
        ids = list(session.execute(sa.select(sa.func.nextval(sequence))
                                   .select_from(sa.func.generate_series(1, len(rows)))).scalars())
    session.execute(sa.insert(table), [dict(row, id=i) for i, row in zip(ids, rows)])
    return ids
