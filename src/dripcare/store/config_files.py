"""config_file rows: which version of each clinic file the processes took, and the error
of a newer one they refused (shown by `dripcare status`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from dripcare.store.models import ConfigFile


def record(session: Session, name: str, digest: str | None, error: str | None, at: datetime) -> None:
    """One statement whoever else records the same file at once (workers starting together)."""
    table = ConfigFile.__table__
    insert = (sqlite_insert if session.bind.dialect.name == "sqlite" else pg_insert)(table)
    taken = {"digest": digest, "loaded_at": at} if error is None else {}
    session.execute(insert.values(name=name, digest=digest if error is None else None, loaded_at=at, error=error)
                    .on_conflict_do_update(index_elements=[table.c.name], set_={**taken, "error": error}))


def errors(session: Session) -> dict[str, str]:
    rows = session.execute(sa.select(ConfigFile).where(ConfigFile.error.is_not(None))
                           .order_by(ConfigFile.name)).scalars()
    return {r.name: r.error for r in rows}


def keep_only(session: Session, names: set[str]) -> None:
    """Files that are gone and not missed: nothing to show any more."""
    session.execute(sa.delete(ConfigFile).where(ConfigFile.name.not_in(names)))
