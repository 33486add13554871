"""The clinic every workload runs: `dripcare init`'s example files, the settings each
process gets, and a seeded CSV export like an EHR's (SPEC 9 columns) to import."""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from measure import DRIPCARE, check, clean_env, run

# Wednesday 11:00 in Edmonton (the example clinic's zone): outside quiet hours, so what is
# due at this instant may go out at once, whatever the hour the benchmark runs at.
T0 = datetime(2027, 3, 3, 18, 0, tzinfo=timezone.utc)
FIRST_COURSE_DAY = date(2027, 3, 15)  # courses start after T0 + 7 days: prep-week is still ahead
SESSIONS = 6
ZONES = ("America/Edmonton", "America/Toronto", "America/Vancouver", "America/Chicago", "America/New_York")
FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kira", "Luis", "Maya",
         "Noor", "Owen", "Priya", "Quinn", "Rosa", "Sam", "Tariq")
LAST = ("Diaz", "Nguyen", "Okafor", "Smith", "Tremblay", "Singh", "Garcia", "Martin", "Roy", "Chen", "Haddad",
        "Lopez", "Wilson", "Gagnon", "Kaur")
PATIENT_COLUMNS = ["external_id", "first_name", "last_name", "preferred_name", "phone", "email", "timezone",
                   "locale", "discreet", "consent_sms", "consent_email"]
SESSION_COLUMNS = ["campaign", "session_id", "session_at", "status", "modality", "location", "duration"]


@dataclass(frozen=True)
class Clinic:
    root: Path  # holds config/ and messages/, as `dripcare init` wrote them
    campaign: str

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def messages(self) -> Path:
        return self.root / "messages"


def make_clinic(workdir: Path, source: Path | None = None) -> Clinic:
    """The example clinic exactly as a new clinic gets it (or a copy of `source`'s files)."""
    root = workdir / "clinic"
    if source is not None:
        for name in ("config", "messages"):
            shutil.copytree(source / name, root / name, dirs_exist_ok=True)
    elif not (root / "config").exists():
        subprocess.run([DRIPCARE, "init", str(root)], cwd=workdir, env=clean_env({}), check=True,
                       capture_output=True, text=True)
    campaigns = sorted(p.stem for p in (root / "config" / "campaigns").glob("*.toml"))
    check(campaigns, f"`dripcare init` wrote no campaign into {root / 'config' / 'campaigns'}")
    return Clinic(root, "ketamine-iv" if "ketamine-iv" in campaigns else campaigns[0])


def settings(clinic: Clinic, database_url: str, now: datetime, outbox: Path, **more: str) -> dict[str, str]:
    """Environment for a dripcare process: this clinic, this database, a clock started at
    `now` (DRIPCARE_NOW, running at real speed), development transports unless `more` says."""
    env = {"DATABASE_URL": database_url, "DRIPCARE_CONFIG_DIR": str(clinic.config),
           "DRIPCARE_MESSAGES_DIR": str(clinic.messages), "DRIPCARE_NOW": iso_z(now),
           "DRIPCARE_SMS_TRANSPORT": "file", "DRIPCARE_EMAIL_TRANSPORT": "file", "DRIPCARE_OUTBOX_DIR": str(outbox)}
    env.update(more)
    return env


def iso_z(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cli(clinic: Clinic, workdir: Path, env: dict[str, str], *args: str, what: str = "", timeout: float = 1800):
    """`dripcare ARGS` as staff run it, in `workdir` (no .env there), measured."""
    name = what or args[0]
    return run([DRIPCARE, *args], env=clean_env(env), cwd=workdir, log=workdir / f"{name.replace(' ', '-')}.log",
               timeout=timeout, what=f"dripcare {' '.join(args)}")


def import_has_session_id() -> bool:
    """Whether this build's `dripcare import` knows SPEC 9's session_id column."""
    helped = subprocess.run([DRIPCARE, "import", "--help"], env=clean_env({"COLUMNS": "200"}),
                            capture_output=True, text=True)
    return "session_id" in helped.stdout


# --- the CSV export -----------------------------------------------------------------------

def patient_cells(n: int, rnd: random.Random) -> dict[str, str]:
    first = rnd.choice(FIRST)
    return {"external_id": f"MRN{n:07d}", "first_name": first, "last_name": rnd.choice(LAST),
            "preferred_name": first[:3] if rnd.random() < 0.15 else "",
            # Written as front desks type them: no +1, with spaces or dashes.
            "phone": f"780 {200 + n // 10_000 % 800:03d} {n % 10_000:04d}" if n % 2 else
                     f"780-{200 + n // 10_000 % 800:03d}-{n % 10_000:04d}",
            "email": f"patient{n}@example.org", "timezone": rnd.choice(ZONES),
            "locale": "es" if rnd.random() < 0.1 else "en", "discreet": "yes" if rnd.random() < 0.1 else "no",
            "consent_sms": "yes" if rnd.random() < 0.9 else "no",
            "consent_email": "yes" if rnd.random() < 0.95 else "no"}


def course(n: int, rnd: random.Random) -> list[str]:
    """Six sessions, two or three days apart, at clinic hours, in the patient's own zone."""
    day = FIRST_COURSE_DAY + timedelta(days=rnd.randrange(0, 21))
    times = []
    for _ in range(SESSIONS):
        times.append(f"{day:%Y-%m-%d} {rnd.choice(('09:00', '09:30', '11:00', '13:30', '15:00'))}")
        day += timedelta(days=rnd.choice((2, 3)))
    return times


def write_export(path: Path, patients: int, campaign: str, *, session_ids: bool, seed: int = 14,
                 sessions: bool = True) -> int:
    """`patients` x 6 session rows (or one row each without sessions); returns the row count."""
    rnd = random.Random(seed)
    columns = PATIENT_COLUMNS + [c for c in SESSION_COLUMNS if session_ids or c != "session_id"]
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for n in range(patients):
            cells = patient_cells(n, rnd)
            for k, at in enumerate(course(n, rnd) if sessions else [None]):
                row = {**cells, "campaign": campaign}
                if at is not None:
                    row.update(session_at=at, status="scheduled", modality="IV", location="Room 2", duration="60")
                    if session_ids:
                        row["session_id"] = f"APPT{n:07d}-{k + 1}"
                writer.writerow(row)
                rows += 1
    return rows
