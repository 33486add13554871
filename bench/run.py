"""`make bench`: measure what DESIGN.md's "Performance shape" promises and write
docs/benchmarks.md. Run from the repository root with the project's venv:

    .venv/bin/python bench/run.py            # about 2 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # smaller sizes, a quick look
    .venv/bin/python bench/run.py --large    # adds a backlog of 1M rows to the claim measure
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(REPO))  # tests.pg starts the throwaway PostgreSQL server
try:
    import dripcare  # noqa: F401  (installed in the venv by `make bench`: pip install -e .)
except ImportError:
    sys.path.insert(2, str(REPO / "src"))

import apscheduler  # noqa: E402
import sqlalchemy  # noqa: E402

import claim_cost  # noqa: E402
import job_per_message  # noqa: E402
import planning_cost  # noqa: E402
import render_rate  # noqa: E402
import report  # noqa: E402
import send_throughput  # noqa: E402
from measure import fresh_sqlite, say  # noqa: E402

CLAIM_NOW = datetime(2027, 3, 3, 19, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Sizes:
    name: str
    backlogs: list[int]
    repeats: int
    patients: int
    crowd: int
    render_seconds: float
    send_seconds: float
    jobs: int
    moved: int
    default_store_sample: int


def sizes(quick: bool, large: bool) -> Sizes:
    if quick:
        chosen = Sizes("quick (--quick)", [2_000, 20_000], 3, 15, 10_000, 0.3, 1.0, 2_000, 200, 60)
    else:
        chosen = Sizes("default", [10_000, 100_000], 7, 50, 100_000, 1.0, 4.0, 10_000, 1_000, 300)
    if large:
        return replace(chosen, name=chosen.name + " + 1M-row backlog (--large)", backlogs=chosen.backlogs + [1_000_000])
    return chosen


def machine(chosen: Sizes, elapsed: float, facts: dict[str, str]) -> list[tuple[str, str]]:
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return [("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("cores (nproc)", str(len(os.sched_getaffinity(0)))),
            ("platform", platform.platform()),
            ("Python", platform.python_version()),
            ("SQLite", sqlite3.sqlite_version),
            *facts.items(),
            ("SQLAlchemy / APScheduler", f"{sqlalchemy.__version__} / {apscheduler.__version__}"),
            ("sizes", chosen.name),
            ("whole run", f"{elapsed:.0f} s, peak RSS {peak_rss:.0f} MiB")]


def measure_all(chosen: Sizes, workdir: Path) -> list:
    claim_engine = fresh_sqlite(workdir / "claim.db")
    try:
        claims = claim_cost.run(claim_engine, chosen.backlogs, CLAIM_NOW, chosen.repeats)
    finally:
        claim_engine.dispose()
    return [claims,
            planning_cost.run(workdir, chosen.patients, chosen.crowd, max(3, chosen.repeats // 2)),
            render_rate.run(chosen.render_seconds),
            send_throughput.run(workdir, chosen.send_seconds),
            job_per_message.run(workdir, chosen.jobs, chosen.moved, chosen.default_store_sample)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure dripcare's performance shape and write docs/benchmarks.md.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a quick look; not for the docs)")
    parser.add_argument("--large", action="store_true", help="add a 1M-row backlog to the claim measure")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md", help="where to write")
    args = parser.parse_args(argv)
    chosen = sizes(args.quick, args.large)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dripcare-bench-") as workdir:
        sections = measure_all(chosen, Path(workdir))
    facts = {k: v for s in sections for k, v in s.facts.items()}
    command = "bench/run.py" + "".join(f" --{flag}" for flag in ("quick", "large") if getattr(args, flag))
    report.write(args.output, machine(chosen, time.perf_counter() - start, facts), sections, command)
    say(f"wrote {args.output} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
