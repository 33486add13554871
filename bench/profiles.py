"""Where the time goes, seen from outside the process: py-spy samples every thread of a
running command (`py-spy record --format raw`), and the stacks are summed here into the
functions that hold the time (inclusive, dripcare's own), the frames that burn it (self),
and the libraries they belong to."""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from measure import check, run

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
PACKAGES = ("dripcare", "sqlalchemy", "sqlmodel", "jinja2", "markdown_it", "markupsafe", "psycopg", "twilio",
            "requests", "urllib3", "apscheduler", "alembic", "phonenumbers", "email_validator", "typer", "rich",
            "click", "pydantic", "sqlite3", "json", "http", "email", "logging", "threading", "concurrent",
            "socket", "ssl", "csv", "zoneinfo", "datetime", "importlib", "encodings")
TOP = 15
# Leaf frames of a thread that is only waiting (for work, a lock, another thread): py-spy
# cannot always tell these from running, so they are counted apart.
WAITING = {"_worker (futures/thread.py)", "Condition.wait (threading.py)", "Event.wait (threading.py)",
           "Thread._wait_for_tstate_lock (threading.py)", "Thread.join (threading.py)",
           "Semaphore.acquire (threading.py)"}


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(cmd: Sequence[str], *, env: dict[str, str], cwd: Path, name: str, rate: int = 200) -> Path:
    """Run `cmd` under py-spy to its end; the raw stacks file."""
    spy = py_spy()
    check(spy, "py-spy is not installed (pip install -c constraints.txt py-spy)")
    out = cwd / f"{name}.stacks"
    run([spy, "record", "--format", "raw", "--rate", str(rate), "--output", str(out), "--", *cmd],
        env=env, cwd=cwd, log=cwd / f"{name}.py-spy.log", what=f"py-spy record of {name}")
    check(out.exists() and out.stat().st_size, f"py-spy wrote no stacks for {name}")
    return out


def attach(pid: int, seconds: float, *, env: dict[str, str], cwd: Path, name: str, rate: int = 200) -> Path:
    """Sample a running process (a worker) for `seconds`; the raw stacks file."""
    spy = py_spy()
    check(spy, "py-spy is not installed (pip install -c constraints.txt py-spy)")
    out = cwd / f"{name}.stacks"
    run([spy, "record", "--format", "raw", "--rate", str(rate), "--duration", str(max(1, round(seconds))),
         "--pid", str(pid), "--output", str(out)], env=env, cwd=cwd, log=cwd / f"{name}.py-spy.log",
        what=f"py-spy record of {name}")
    check(out.exists() and out.stat().st_size, f"py-spy wrote no stacks for {name}")
    return out


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = []
        for text in body.split(";"):
            m = FRAME.match(text.strip())
            frames.append((m["func"], m["file"]) if m else (text.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


def package(file: str) -> str:
    if "importlib" in file:
        return "importlib (loading modules)"
    parts = file.replace("\\", "/").split("/")
    for part in parts:
        name = part[:-3] if part.endswith(".py") else part
        if name in PACKAGES:
            return name
    return "python, other"


def where(func: str, file: str) -> str:
    """`module.function` for dripcare's own frames, `function (file)` for the rest."""
    parts = file.replace("\\", "/").split("/")
    if "dripcare" in parts:
        module = ".".join(parts[parts.index("dripcare"):])[:-3]
        return f"{module}.{func}"
    return f"{func} ({'/'.join(parts[-2:])})"


def summarize(path: Path, skip_above: float = 0.97) -> dict:
    """Shares of the working samples (Python starting up, importing modules, is counted
    apart): dripcare functions inclusive (entry points that hold nearly everything are
    left out), leaf frames, and libraries by self time."""
    stacks = parse(path)
    check(sum(n for _, n in stacks), f"{path} holds no samples")
    loading, waiting, working = [], [], []
    for frames, n in stacks:
        if any(f == "_find_and_load" for f, _ in frames):
            loading.append((frames, n))
        elif where(*frames[-1]) in WAITING:
            waiting.append((frames, n))
        else:
            working.append((frames, n))
    total = sum(n for _, n in working) or 1
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    libraries: Counter = Counter()
    for frames, n in working:
        for name in {where(f, file) for f, file in frames if package(file) == "dripcare" and f != "<module>"}:
            inclusive[name] += n
        func, file = frames[-1]
        leaf[where(func, file)] += n
        libraries[package(file)] += n

    def shares(counter: Counter, limit: int = TOP, cap: float = 1.01) -> list[list]:
        return [[name, round(n / total, 4)] for name, n in counter.most_common() if n / total < cap][:limit]

    everything = sum(n for _, n in stacks)
    return {"samples": everything, "working_samples": sum(n for _, n in working),
            "loading_modules": round(sum(n for _, n in loading) / everything, 4),
            "waiting": round(sum(n for _, n in waiting) / everything, 4),
            "inclusive": shares(inclusive, cap=skip_above), "self": shares(leaf),
            "libraries": shares(libraries, limit=10)}


def per_unit(counts: dict, units: int) -> dict:
    """Statements and transactions per message (or per patient)."""
    if not units:
        return {}
    keys = ("statements", "transactions", "SELECT", "INSERT", "UPDATE", "executemany", "executemany_rows")
    return {k: round(counts.get(k, 0) / units, 3) for k in keys if k in counts}
