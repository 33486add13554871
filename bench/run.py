"""`make bench`: the five workloads of DESIGN "Performance shape", each side by side with
its baseline, measured from the outside; results to bench/results/<date>.json and
docs/benchmarks.md.

    .venv/bin/python bench/run.py                      # everything (tens of minutes on 2 cores)
    .venv/bin/python bench/run.py --only drain,scale   # some workloads again; the others kept
                                                       # from the newest results file
    .venv/bin/python bench/run.py --quick              # seconds: every workload's code on tiny
                                                       # sizes, into a temporary folder (make test)
    .venv/bin/python bench/run.py --render bench/results/X.json   # the page again, nothing measured

Sizes: --import-patients 2000,10000 --pg-import-patients 2000 --idle-rows 10000,100000,1000000
--drain-messages 100000 --drain-seconds 60 --provider-concurrency 1,8,32 --provider-seconds 10
--scale-workers 1,2,4 --scale-messages 4000 (see --help). No timing is ever asserted: a run
fails only when a workload did not do what it measures (a count is off, a process failed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # bench's modules; tests.support (the PostgreSQL cluster)

import drain  # noqa: E402
import idle_tick  # noqa: E402
import import_speed  # noqa: E402
import provider_bound  # noqa: E402
import report  # noqa: E402
import scale_out  # noqa: E402
from clinic import make_clinic  # noqa: E402
from databases import SqliteFiles, postgres  # noqa: E402
from measure import REPO, say  # noqa: E402
from run_context import Context, Sizes  # noqa: E402

WORKLOADS = {"import": import_speed, "idle": idle_tick, "drain": drain, "provider": provider_bound,
             "scale": scale_out}
RESULTS = BENCH / "results"
DOC = REPO / "docs" / "benchmarks.md"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure dripcare from the outside; write docs/benchmarks.md.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, results to a temporary folder")
    parser.add_argument("--only", help=f"comma-separated workloads ({', '.join(WORKLOADS)}); the others are "
                                       "kept from the newest results file")
    parser.add_argument("--render", type=Path, metavar="RESULTS.json", help="write the page from a results file")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-profiles", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("--output", type=Path, help="the page (default docs/benchmarks.md; --quick: a temp folder)")
    parser.add_argument("--results", type=Path, help="folder for the results JSON (default bench/results)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--clinic", type=Path, help="a folder with config/ and messages/ (default: what "
                                                   "`dripcare init` writes)")
    full, quick = Sizes(), Sizes.quick()
    for f in fields(Sizes):
        value, small = getattr(full, f.name), getattr(quick, f.name)
        shown = (lambda v: ",".join(str(x) for x in v)) if isinstance(value, list) else str
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name,
                            metavar="A,B" if isinstance(value, list) else "N",
                            help=f"default {shown(value)}; --quick {shown(small)}")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    chosen = Sizes.quick() if args.quick else Sizes()
    for f in fields(Sizes):
        given = getattr(args, f.name, None)
        if given is None:
            continue
        current = getattr(chosen, f.name)
        if isinstance(current, list):
            kind = str if f.name in ("profiles", "provider_variants", "drain_transports") else int
            setattr(chosen, f.name, [kind(v) for v in given.split(",") if v])
        else:
            setattr(chosen, f.name, type(current)(float(given)))
    if args.no_profiles:
        chosen.profiles = []
    return chosen


def machine(workdir: Path, pg_version: str | None) -> dict[str, str]:
    import apscheduler
    import psycopg
    import sqlalchemy
    import twilio

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    memory = next((int(line.split()[1]) // 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if _git("status", "--porcelain")
                                                              else ""),
            "cores (nproc)": str(len(os.sched_getaffinity(0))), "CPU": cpu, "memory": f"{memory} GiB",
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "platform": platform.platform(), "Python": platform.python_version(),
            "SQLite": sqlite3.sqlite_version, "PostgreSQL": pg_version or "not measured",
            "scratch filesystem": _filesystem(workdir),
            "libraries": f"SQLAlchemy {sqlalchemy.__version__}, APScheduler {apscheduler.__version__}, "
                         f"twilio {twilio.__version__}, psycopg {psycopg.__version__}"}


def _git(*args: str) -> str:
    found = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown"


def _filesystem(path: Path) -> str:
    """The mount the scratch databases live on (SQLite's syncs cost what its disk costs)."""
    best = ("", "unknown")
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) > len(best[0]):
            best = (parts[1], parts[2])
    return f"{best[1]} ({path})"


def measure(chosen: list[str], ctx: Context) -> dict:
    out = {}
    for name in chosen:
        say(f"== {name}")
        start = time.perf_counter()
        result = WORKLOADS[name].run_workload(ctx)
        result["measured_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        result["elapsed"] = time.perf_counter() - start
        out[name] = result
    return out


def newest_results(folder: Path) -> dict | None:
    found = sorted(folder.glob("*.json"))
    return json.loads(found[-1].read_text()) if found else None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        report.write(args.output or DOC, json.loads(args.render.read_text()))
        say(f"wrote {args.output or DOC}")
        return 0
    chosen = [w.strip() for w in (args.only or ",".join(WORKLOADS)).split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        say(f"unknown workload {', '.join(unknown)}; the workloads are {', '.join(WORKLOADS)}")
        return 2
    # A quick run never touches docs/ or bench/results: `make test` leaves the tree as it was.
    quick_out = Path(tempfile.gettempdir()) / "dripcare-bench-quick"
    results_dir = args.results or (quick_out if args.quick else RESULTS)
    output = args.output or (quick_out / "benchmarks.md" if args.quick else DOC)
    if args.quick and results_dir == quick_out:
        for old in quick_out.glob("*-quick.json"):
            old.unlink()  # one quick run's results at a time
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dripcare-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        with (_no_postgres() if args.no_postgres else postgres(notes)) as pg:
            ctx = Context(workdir, make_clinic(workdir, args.clinic), SqliteFiles(workdir), pg, sizes_from(args),
                          args.quick, notes)
            facts = machine(workdir, pg.version if pg else None)
            measured = measure(chosen, ctx)
    results = _merged(measured, args, ctx.sizes, facts, time.perf_counter() - start, notes, results_dir)
    path = _save(results, results_dir)
    report.write(output, json.loads(path.read_text()))  # the page comes from the file alone
    say(f"wrote {path} and {output} ({time.perf_counter() - start:.0f} s)")
    return 0


def _merged(measured: dict, args, sizes: Sizes, facts: dict, elapsed: float, notes: list[str],
            results_dir: Path) -> dict:
    """This run's workloads, over the newest earlier results for the ones not rerun."""
    previous = newest_results(results_dir) if args.only and not args.quick else None
    workloads = {**(previous or {}).get("workloads", {}), **measured}
    command = "bench/run.py" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    return {"format": 1, "run": {"command": command, "quick": args.quick, "elapsed_seconds": round(elapsed),
                                 "machine": facts, "sizes": asdict(sizes),
                                 "kept_from": (previous or {}).get("run", {}).get("results_file")},
            "workloads": workloads, "notes": notes}


def _save(results: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%MZ")
                     + ("-quick" if results["run"]["quick"] else "") + ".json")
    results["run"]["results_file"] = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    return path


@contextmanager
def _no_postgres():
    yield None


if __name__ == "__main__":
    sys.exit(main())
