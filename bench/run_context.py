"""What one benchmark run measures (sizes) and where (its folder, the clinic, the
databases), handed to every workload."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clinic import Clinic
from databases import Postgres, SqliteFiles


@dataclass
class Sizes:
    import_patients: list[int] = field(default_factory=lambda: [2_000, 10_000])
    pg_import_patients: list[int] = field(default_factory=lambda: [2_000])
    import_repeats: list[int] = field(default_factory=lambda: [3, 1])  # per size; the last for any more
    idle_rows: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    pg_idle_rows: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    idle_passes: int = 21
    drain_messages: int = 100_000
    drain_seconds: float = 60.0  # a drain stops (as SIGTERM stops a worker) after this long
    bound_repeats: int = 3
    drain_transports: list[str] = field(default_factory=lambda: ["file", "null"])
    import_again: bool = True  # the first size imported a second time (the daily import, nothing changed)
    provider_rate: float = 50.0
    provider_concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    provider_seconds: float = 10.0  # messages per run: this long at the run's bound
    provider_variants: list[str] = field(default_factory=lambda: ["fixed", "jitter"])
    scale_workers: list[int] = field(default_factory=lambda: [1, 2, 4])
    scale_messages: int = 4_000
    scale_rate: float = 1_000_000  # DRIPCARE_SMS_RATE for scale-out: out of the way
    profile_import_patients: int = 300
    profile_drain_seconds: float = 15.0
    profiles: list[str] = field(default_factory=lambda: ["import", "import-postgresql", "drain-sqlite",
                                                         "drain-postgresql", "provider", "scale"])

    @classmethod
    def quick(cls) -> "Sizes":
        """Seconds, not minutes: every workload's code runs, on sizes too small to mean anything."""
        return cls(import_patients=[5], pg_import_patients=[5], import_repeats=[1], import_again=False,
                   idle_rows=[200, 1_000], pg_idle_rows=[200, 1_000], idle_passes=3,
                   drain_messages=200, drain_seconds=3.0, bound_repeats=1, drain_transports=["file"],
                   provider_variants=["jitter"], provider_concurrency=[8], provider_seconds=0.5,
                   scale_workers=[2], scale_messages=60,
                   profile_import_patients=5, profile_drain_seconds=2.0, profiles=["import", "drain-sqlite"])


@dataclass
class Context:
    workdir: Path
    clinic: Clinic
    sqlite: SqliteFiles
    pg: Postgres | None
    sizes: Sizes
    quick: bool
    notes: list[str] = field(default_factory=list)  # why something was not measured
    # Made once per run and then copied (staging.py): the migrated empty database of each kind,
    # and the template patient's database per kind of course.
    migrated: set[str] = field(default_factory=set)
    templates: dict[str, tuple[str, int]] = field(default_factory=dict)

    def repeats(self, patients: int, sizes: list[int]) -> int:
        counts = self.sizes.import_repeats or [1]
        return counts[min(sizes.index(patients), len(counts) - 1)]

    def db(self, database: str) -> SqliteFiles | Postgres:
        return self.sqlite if database == "sqlite" else self.pg
