"""Many rows into one table in one statement, with their ids (an import writes thousands).

SQLite runs `INSERT ... RETURNING` with `sort_by_parameter_order` as one statement per row;
instead, the ids after the largest are named here: every SQLite transaction holds the write
lock from its start (BEGIN IMMEDIATE, `store/db.py`), so nobody else can take them. On
PostgreSQL one INSERT ... RETURNING gives the ids in the order of the rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session


def insert_with_ids(session: Session, table: sa.Table, rows: list[dict]) -> list[int]:
    """The ids of `rows`, inserted in one statement, in their order."""
    if not rows:
        return []
    if session.bind.dialect.name == "sqlite":
        first = (session.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
        ids = list(range(first, first + len(rows)))
        session.execute(sa.insert(table), [dict(row, id=i) for i, row in zip(ids, rows)])
        return ids
    return list(session.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
                                rows).scalars())
