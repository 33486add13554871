"""config_file rows: which version of each clinic file the processes took, and the error
of a newer one they refused (shown by `dripcare status`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from dripcare.store.models import ConfigFile


def record(session: Session, name: str, digest: str | None, error: str | None, at: datetime) -> None:
    row = session.get(ConfigFile, name) or ConfigFile(name=name, loaded_at=at)
    if error is None:
        row.digest, row.loaded_at = digest, at
    row.error = error
    session.add(row)


def errors(session: Session) -> dict[str, str]:
    rows = session.execute(sa.select(ConfigFile).where(ConfigFile.error.is_not(None))
                           .order_by(ConfigFile.name)).scalars()
    return {r.name: r.error for r in rows}


def keep_only(session: Session, names: set[str]) -> None:
    """Files that are gone and not missed: nothing to show any more."""
    session.execute(sa.delete(ConfigFile).where(ConfigFile.name.not_in(names)))
