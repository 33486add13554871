"""A throwaway PostgreSQL cluster for the suite: initdb + pg_ctl on a free loopback port,
as a non-root user (PostgreSQL refuses to run as root). Skips when the server binaries
are missing, unless DRIPCARE_REQUIRE_POSTGRES=1 (CI), where that fails the run."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


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


def _as_user(user: str | None):
    if user is None:
        return None
    entry = pwd.getpwnam(user)

    def demote():
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


def _unavailable(reason: str):
    if os.environ.get("DRIPCARE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (DRIPCARE_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server():
    """Yields a SQLAlchemy URL (postgres://, as platforms hand it out) to an empty database."""
    bin_dir = _binaries()
    if bin_dir is None:
        _unavailable("initdb was not found")
    user = None
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
    base = Path(tempfile.mkdtemp(prefix="dripcare-pg-"))
    data = base / "data"
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    demote = _as_user(user)
    run = dict(preexec_fn=demote, capture_output=True, text=True, cwd=base)
    init = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "dripcare", "--auth=trust",
                           "-E", "UTF8", "--locale=C"], **run)
    if init.returncode:
        _unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    start = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(base / "log"),
                            "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                            "start"], **run)
    if start.returncode:
        _unavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
    try:
        yield f"postgres://dripcare@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], **run)
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
