"""Staging an outbox of any size in seconds: one patient made by the real path
(`dripcare import` of a one-patient file: patient, consent, enrollment, sessions and the
rows planning gave them), then copied N times in bulk, every copy its own patient with
its own phone, email and ids. The copy reads the schema from the database itself, so it
follows migrations without being told.

What the dispatcher reads at send time (the row, the patient, consent for that contact,
the enrollment, its sessions) is exactly what planning wrote for the original."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from clinic import PATIENT_COLUMNS, SESSION_COLUMNS, T0, cli, settings
from databases import bulk_insert, engine_for
from measure import check
from run_context import Context

TEMPLATE_MRN = "BENCH-TEMPLATE"
TEMPLATE_PHONE = "+17805550142"
TEMPLATE_EMAIL = "template@example.org"
CHUNK = 2_000  # copies per transaction
MIGRATED = "migrated-empty"


def migrated(ctx: Context, database: str, name: str) -> str:
    """A new database with dripcare's schema: a copy of one made by `dripcare db upgrade` once per run."""
    db = ctx.db(database)
    if database not in ctx.migrated:
        url = db.fresh(MIGRATED)
        cli(ctx.clinic, ctx.workdir, settings(ctx.clinic, url, T0, ctx.workdir / "outbox"), "db", "upgrade",
            what=f"db upgrade {database}")
        ctx.migrated.add(database)
    return db.copy(MIGRATED, name)


def with_template(ctx: Context, database: str, name: str, sessions: list[str]) -> tuple[str, int]:
    """A database holding the one template patient (imported once per run and kind of course,
    then copied); its url and the patient's id."""
    key = f"{database}:{','.join(sessions)}"
    db = ctx.db(database)
    if key not in ctx.templates:
        source = f"template-{len(ctx.templates)}"
        url = migrated(ctx, database, source)
        ctx.templates[key] = (source, import_template(ctx, url, sessions))
    source, patient_id = ctx.templates[key]
    return db.copy(source, name), patient_id


def import_template(ctx: Context, url: str, sessions: list[str]) -> int:
    """The one patient, through `dripcare import`; returns the patient's id."""
    path = ctx.workdir / "template.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, PATIENT_COLUMNS + [c for c in SESSION_COLUMNS if c != "session_id"])
        writer.writeheader()
        person = {"external_id": TEMPLATE_MRN, "first_name": "Robin", "last_name": "Template",
                  "phone": TEMPLATE_PHONE, "email": TEMPLATE_EMAIL, "timezone": "America/Edmonton",
                  "locale": "en", "discreet": "no", "consent_sms": "yes", "consent_email": "yes",
                  "campaign": ctx.clinic.campaign}
        for at in sessions or [None]:
            writer.writerow({**person, **({"session_at": at, "status": "scheduled", "modality": "IV",
                                           "location": "Room 2", "duration": "60"} if at else {})})
    env = settings(ctx.clinic, url, T0, ctx.workdir / "outbox")
    cli(ctx.clinic, ctx.workdir, env, "import", str(path), "--by", "bench", what="import template")
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            found = c.execute(sa.text("SELECT id FROM patient WHERE external_id = :m"), {"m": TEMPLATE_MRN}).scalar()
    finally:
        engine.dispose()
    check(found, "the template patient was not imported")
    return found


class Copier:
    """Copies of the template patient and every row hanging off it (by foreign key)."""

    def __init__(self, url: str, patient_id: int, *, keep: Callable[[str, dict], bool] = lambda t, r: True,
                 skip: tuple[str, ...] = ("message_event",)):
        self.engine = engine_for(url)
        self.meta = sa.MetaData()
        self.meta.reflect(self.engine)
        self.tables = [t for t in self.meta.sorted_tables if t.name not in skip]
        self.template = self._gather(patient_id, keep)
        self.unique = self._unique_text_columns()
        # Where each template row sits in its table's list: copy k's id is base + k * rows + index.
        self._index = {name: {r["id"]: i for i, r in enumerate(rows)} for name, rows in self.template.items()}
        self.copies = 0

    def _gather(self, patient_id: int, keep) -> dict[str, list[dict]]:
        """The template's rows, table by table, parents first."""
        found: dict[str, list[dict]] = {}
        ids: dict[str, set] = {"patient": {patient_id}}
        with self.engine.connect() as c:
            for table in self.tables:
                if table.name == "patient":
                    rows = [dict(r._mapping) for r in c.execute(table.select().where(table.c.id == patient_id))]
                else:
                    links = [(fk.parent, fk.column.table.name) for fk in table.foreign_keys
                             if fk.column.table.name in ids]
                    if not links:
                        continue
                    rows = [dict(r._mapping) for r in c.execute(table.select().where(
                        sa.or_(*[col.in_(ids[parent]) for col, parent in links])).order_by(table.c.id))]
                    # Every reference must point at a row that is copied too.
                    rows = [r for r in rows if all(r[col.name] is None or r[col.name] in ids[parent]
                                                   for col, parent in links) and keep(table.name, r)]
                if rows:
                    found[table.name] = rows
                    ids[table.name] = {r["id"] for r in rows}
        return found

    def _unique_text_columns(self) -> dict[str, list[str]]:
        inspector = sa.inspect(self.engine)
        unique: dict[str, list[str]] = {}
        for name in self.template:
            cols = {c for u in inspector.get_unique_constraints(name) for c in u["column_names"]}
            cols |= {c for i in inspector.get_indexes(name) if i.get("unique") for c in i["column_names"]}
            unique[name] = [c for c in cols if c != "id"]
        return unique

    @property
    def per_copy(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.template.items()}

    def add(self, copies: int, shift: Callable[[int], timedelta] = lambda n: timedelta(0)) -> None:
        """`copies` more patients; copy n has every instant moved by `shift(n)`."""
        done = 0
        while done < copies:
            count = min(CHUNK, copies - done)
            with self.engine.begin() as c:
                base = {name: (c.execute(sa.select(sa.func.max(self.meta.tables[name].c.id))).scalar() or 0) + 1
                        for name in self.template}
                for table in self.tables:
                    if table.name in self.template:
                        rows = [row for k in range(count) for row in self._copy(table, self.copies + done + k,
                                                                                base, k, shift)]
                        bulk_insert(self.engine, table, rows, connection=c)
            done += count
        self.copies += copies
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as c:
                for name in self.template:
                    c.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                      f"(SELECT max(id) FROM \"{name}\"))")

    def _copy(self, table: sa.Table, n: int, base: dict[str, int], k: int, shift) -> list[dict]:
        """Copy `n` (the k-th of this chunk) of the template's rows of `table`."""
        def new_id(name: str, old_id: int) -> int:
            index = self._index[name][old_id]
            return base[name] + k * len(self.template[name]) + index

        contact = {TEMPLATE_PHONE: f"+1780{2_000_000 + n:07d}", TEMPLATE_EMAIL: f"copy{n}@example.org"}
        moved = shift(n)
        links = {fk.parent.name: fk.column.table.name for fk in table.foreign_keys
                 if fk.column.table.name in self.template}
        out = []
        for row in self.template[table.name]:
            new = {}
            for col, value in row.items():
                if col == "id":
                    value = new_id(table.name, value)
                elif col in links and value is not None:
                    value = new_id(links[col], value)
                elif isinstance(value, str):
                    value = contact.get(value, value)
                    if col in self.unique[table.name]:
                        value = f"{value}~{n}"
                elif isinstance(value, datetime):
                    value = value + moved
                new[col] = value
            out.append(new)
        return out

    def rows(self, table: str, **where) -> int:
        t = self.meta.tables[table]
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(t).where(
                *[t.c[k] == v for k, v in where.items()])).scalar_one()

    def dispose(self) -> None:
        self.engine.dispose()


def due_messages(engine_url: str) -> int:
    engine = engine_for(engine_url)
    try:
        with engine.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM message WHERE status = 'scheduled'")).scalar_one()
    finally:
        engine.dispose()


def keep_only(engine: Engine | str, count: int) -> None:
    """Exactly `count` scheduled rows left (the lowest ids); the rest cancelled out of the way."""
    engine = engine_for(engine) if isinstance(engine, str) else engine
    with engine.begin() as c:
        cutoff = c.execute(sa.text("SELECT id FROM message WHERE status = 'scheduled' ORDER BY id "
                                   "LIMIT 1 OFFSET :n"), {"n": count}).scalar()
        if cutoff is not None:
            c.execute(sa.text("UPDATE message SET status = 'cancelled', reason = 'staff' "
                              "WHERE status = 'scheduled' AND id >= :cut"), {"cut": cutoff})
    engine.dispose()
