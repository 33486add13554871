"""One drain, in a process of its own (so its peak RSS and CPU are the dispatcher's): the
real Dispatcher from `app.runtime.build_dispatcher`, settings from the environment as a
worker reads them, passes until nothing is sent (or `--seconds` run out, when it stops
the way SIGTERM stops a worker). Prints one JSON line: what was sent, how long it took,
and the statements and transactions it ran.

    python bench/drain_child.py --transport file|null [--seconds 60] [--stall 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from datetime import datetime

from counted import count_statements


class NullTransport:
    """The transport port with no provider at all: what the dispatcher costs by itself."""

    name = "null"
    development = True

    def __init__(self, channel: str):
        self.channel = channel

    def send(self, outgoing) -> str:
        return f"null-{outgoing.message_id}"

    def lookup(self, outgoing, since: datetime) -> str | None:
        return None


def watch(engine, stopping: threading.Event, stall: float, stalled: threading.Event) -> None:
    """Stop a drain that has sent nothing new for `stall` seconds (rows claimed and put
    back over and over): the finding is that it stalls, not how long it can stall."""
    import sqlalchemy as sa

    # Its own plain connection: dripcare's SQLite engine begins every transaction IMMEDIATE
    # (the write lock), which a reader polling twice a second must not take.
    reader = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    last, since = -1, time.monotonic()
    while not stopping.wait(0.5):
        with reader.connect() as c:
            sent = c.execute(sa.text("SELECT count(*) FROM message WHERE status = 'sent'")).scalar_one()
        if sent != last:
            last, since = sent, time.monotonic()
        elif time.monotonic() - since > stall:
            stalled.set()
            stopping.set()


def drain(transport: str, seconds: float, stall: float) -> dict:
    from dripcare.app.runtime import build_dispatcher, open_runtime
    from dripcare.config.settings import Settings

    settings = Settings()
    rt = open_runtime(settings)
    counted = count_statements(rt.engine)
    transports = {c: NullTransport(c) for c in ("sms", "email")} if transport == "null" else None
    dispatcher = build_dispatcher(rt, settings, "bench-drain", transports=transports)
    timer = threading.Timer(seconds, dispatcher.stopping.set)  # as SIGTERM: claim nothing more
    stalled = threading.Event()
    threading.Thread(target=watch, args=(rt.engine, dispatcher.stopping, stall, stalled), daemon=True).start()
    total: Counter = Counter()
    start = time.perf_counter()
    cpu = time.process_time()
    timer.start()
    try:
        while not dispatcher.stopping.is_set():
            summary = dispatcher.run_pass()
            total.update(summary)
            if not summary.get("sent"):
                break
    finally:
        timer.cancel()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        dispatcher.close()
    return {"summary": dict(total), "sent": total.get("sent", 0), "seconds": elapsed, "cpu": cpu,
            "stopped_by_cap": dispatcher.stopping.is_set() and not stalled.is_set(), "stalled": stalled.is_set(),
            "counted": dict(counted)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("file", "null"), default="file")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long (a cap, as SIGTERM)")
    parser.add_argument("--stall", type=float, default=15.0, help="stop when nothing more was sent for this long")
    args = parser.parse_args(argv)
    print(json.dumps(drain(args.transport, args.seconds, args.stall)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
