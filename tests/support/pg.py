"""A throwaway PostgreSQL cluster: initdb + pg_ctl on a free loopback port, as a non-root
user (PostgreSQL refuses to run as root). The suite's `postgres_server` fixture skips when
the server binaries are missing, unless DRIPCARE_REQUIRE_POSTGRES=1 (CI), where that fails
the run; the benchmark uses `throwaway_postgres` directly and notes a missing server."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest


class PostgresUnavailable(Exception):
    """Why no server could be started; the report says it."""


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a postgres nor a nobody user exists")


def _demote(user: str | None):
    if user is None:
        return None
    entry = pwd.getpwnam(user)

    def demote():
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yields a postgres:// URL to an empty cluster; stops and deletes it afterwards."""
    bin_dir = _binaries()
    if bin_dir is None:
        raise PostgresUnavailable("initdb was not found")
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="dripcare-bench-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, port = base / "data", _free_port()
    run = dict(preexec_fn=_demote(user), capture_output=True, text=True, cwd=base)
    try:
        init = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "dripcare", "--auth=trust",
                               "-E", "UTF8", "--locale=C"], **run)
        if init.returncode:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
        # fsync=off as in the tests: the benchmark measures the queries, not the disk.
        start = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l",
                                str(base / "log"), "-o",
                                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], **run)
        if start.returncode:
            raise PostgresUnavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
        try:
            yield f"postgres://dripcare@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], **run)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unavailable(reason: str):
    if os.environ.get("DRIPCARE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (DRIPCARE_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server():
    """Yields a URL (postgres://, as platforms hand it out) to an empty cluster."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as error:
            _unavailable(str(error))
        yield url
