"""The design DESIGN.md turned down, as a process of its own: one APScheduler 3 `date`
job per message, added to a SQLAlchemyJobStore opened with APScheduler's own settings
(`SQLAlchemyJobStore(url=...)`), on a scheduler started paused so each job is written to
its store at add time and none runs.

    python bench/apscheduler_child.py --url URL --due FILE   # FILE: one epoch second per line

Prints one JSON line: jobs added, seconds, and the rate of each block of 1,000."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BLOCK = 1000


def send_message(message_id: int) -> None:
    """What each job would run; never runs here."""


def add_jobs(url: str, due: list[datetime]) -> dict:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    import sqlalchemy as sa

    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=timezone.utc)
    scheduler.start(paused=True)
    blocks, start = [], time.perf_counter()
    block_start = start
    try:
        for n, when in enumerate(due, 1):
            scheduler.add_job(send_message, "date", run_date=when, args=[n], id=f"message-{n}")
            if n % BLOCK == 0:
                now = time.perf_counter()
                blocks.append(BLOCK / (now - block_start))
                block_start = now
        elapsed = time.perf_counter() - start
    finally:
        scheduler.shutdown(wait=False)
    # Counted in SQL, not by get_jobs(): loading every job back would add to the baseline's time.
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT count(*) FROM apscheduler_jobs")).scalar_one()
    finally:
        engine.dispose()
    return {"jobs": len(due), "stored": stored, "seconds": elapsed, "block_rates": blocks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--due", type=Path, required=True)
    args = parser.parse_args(argv)
    due = [datetime.fromtimestamp(float(line), timezone.utc) for line in args.due.read_text().split()]
    print(json.dumps(add_jobs(args.url, due)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
