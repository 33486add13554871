"""The databases the workloads run on: SQLite files and databases on one throwaway
PostgreSQL 15 cluster (tests/support/pg.py starts it, as the suite does), copies of a
staged database for each run, and bulk loading (executemany; COPY on PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from measure import say
from tests.support.pg import PostgresUnavailable, throwaway_postgres

__all__ = ["Postgres", "PostgresUnavailable", "SqliteFiles", "bulk_insert", "engine_for", "postgres"]


def engine_for(url: str) -> Engine:
    """A plain engine for the benchmark's own reads and loads (not dripcare's settings)."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


@dataclass
class SqliteFiles:
    folder: Path

    def url(self, name: str) -> str:
        return f"sqlite:///{self.folder / (name + '.db')}"

    def fresh(self, name: str) -> str:
        self.drop(name)
        return self.url(name)

    def drop(self, name: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.folder / (name + '.db')}{suffix}").unlink(missing_ok=True)

    def copy(self, source: str, name: str) -> str:
        """A copy of a staged file (its write-ahead log folded in first)."""
        src = self.folder / (source + ".db")
        with sqlite3.connect(src) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.drop(name)
        shutil.copyfile(src, self.folder / (name + ".db"))
        return self.url(name)


@dataclass
class Postgres:
    """One cluster, many databases: each run gets a fresh one or a copy of a staged one."""

    server_url: str  # postgres://dripcare@127.0.0.1:PORT/postgres
    version: str

    def url(self, name: str) -> str:
        return str(make_url(self.server_url).set(database=name).render_as_string(hide_password=False))

    def _admin(self, sql: str) -> None:
        engine = engine_for(self.server_url)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def fresh(self, name: str) -> str:
        self.drop(name)
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def copy(self, source: str, name: str) -> str:
        """CREATE DATABASE ... TEMPLATE: a file-level copy, seconds for a million rows."""
        self.drop(name)
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return self.url(name)

    def analyze(self, name: str) -> None:
        """What autovacuum does shortly after a bulk load."""
        engine = engine_for(self.url(name))
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        finally:
            engine.dispose()


@contextmanager
def postgres(stack_note: list[str]) -> Iterator[Postgres | None]:
    """The cluster, or None with the reason appended to `stack_note` (a missing server is a
    note in the report; under DRIPCARE_REQUIRE_POSTGRES=1, as in CI, it is an error)."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as why:
            if os.environ.get("DRIPCARE_REQUIRE_POSTGRES") == "1":
                raise
            say(f"PostgreSQL not measured: {why}")
            stack_note.append(str(why))
            yield None
            return
        engine = engine_for(url)
        with engine.connect() as c:
            version = "PostgreSQL " + c.exec_driver_sql("SHOW server_version").scalar_one().split()[0]
        engine.dispose()
        yield Postgres(url, version)


def bulk_insert(engine: Engine, table: sa.Table, rows: list[dict], connection=None) -> None:
    """Rows with every column given; COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    columns = list(rows[0])
    if engine.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        names = ", ".join(f'"{c}"' for c in columns)
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    else:
        connection.execute(table.insert(), rows)
