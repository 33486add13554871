"""What every measure shares: timing (medians of repeats), memory, fresh databases,
and the section a measure hands to the report."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from dripcare.store.db import make_engine, upgrade

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "src" / "dripcare" / "examples"


@dataclass
class Section:
    """One measure in docs/benchmarks.md: tables first, then what the numbers mean."""

    title: str
    headline: str = ""  # one line for the summary at the top
    facts: dict[str, str] = field(default_factory=dict)  # for the machine table (server versions)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # preformatted text (query plans)
    meaning: list[str] = field(default_factory=list)

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.tables.append((header, [[str(cell) for cell in row] for row in rows]))


def say(text: str) -> None:
    print(text, flush=True)


def seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_of(fn: Callable[[], object], repeats: int, between: Callable[[], object] | None = None) -> float:
    """Median wall time of `repeats` calls; `between` runs untimed after each call."""
    times = []
    for _ in range(repeats):
        elapsed, _result = seconds(fn)
        times.append(elapsed)
        if between is not None:
            between()
    return statistics.median(times)


def memory_of(fn: Callable[[], object]) -> tuple[int, int, object]:
    """(bytes still held after `fn`, peak bytes during it, its result), by tracemalloc.
    Run apart from timings: tracing slows Python code several times over."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held - before, peak - before, result


def fresh_sqlite(path: Path) -> Engine:
    """A new database file with dripcare's pragmas and the migrated schema."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms" if value < 1 else f"{value:.2f} s"


def us(value: float) -> str:
    return f"{value * 1e6:.0f} µs" if value < 1e-3 else ms(value)


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def count(value: float) -> str:
    return f"{value:,.0f}"
