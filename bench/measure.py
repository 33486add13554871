"""What every workload shares: processes run and measured from the outside (wall time,
peak RSS, CPU), a clean environment for them, medians, the one-second window count, and
the check that says a benchmark measured what it claims (never a timing)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
DRIPCARE = str(Path(sys.executable).parent / "dripcare")  # the console script `pip install -e .` made
ENV_PREFIXES = ("DRIPCARE_", "TWILIO_", "SMTP_", "EMAIL_", "DATABASE_URL")


class BenchError(Exception):
    """The benchmark did not measure what it says it measured (a count, not a time, is off)."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise BenchError(message)


def say(text: str) -> None:
    print(text, flush=True)


def clean_env(settings: dict[str, str]) -> dict[str, str]:
    """The machine's environment without any dripcare setting, plus `settings`: a run
    never picks up a developer's DATABASE_URL or Twilio credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update(settings)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(REPO)])  # bench helpers; tests.support
    return env


@dataclass
class Ran:
    """One finished process as the operating system saw it."""

    code: int
    wall: float  # seconds, start to exit
    cpu: float  # user + system seconds
    peak_rss_mib: float
    stdout: str
    stderr: str

    def tail(self, lines: int = 12) -> str:
        return "\n".join((self.stderr or self.stdout).strip().splitlines()[-lines:])


def high_water_mib(pid: int) -> float | None:
    """The process's own peak RSS so far (VmHWM), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class Process:
    """A process started now and measured when it ends (`os.wait4` gives its CPU time).

    Its peak RSS is read from /proc while it runs, not from `ru_maxrss`: Linux carries the
    parent's RSS at fork through exec into the child's `ru_maxrss`, so a child of a large
    bench process would report the bench's memory, not its own."""

    def __init__(self, cmd: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path):
        self.log = log
        self._out = open(log.with_suffix(".out"), "w+")
        self._err = open(log, "w+")
        self._ended: tuple | None = None
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=self._out, stderr=self._err,
                                      stdin=subprocess.DEVNULL)
        self.peak_rss_mib = 0.0
        self._watching = threading.Event()
        threading.Thread(target=self._watch_memory, daemon=True).start()

    def _watch_memory(self) -> None:
        """VmHWM only grows: the last reading before exit is the peak, to within 50 ms."""
        while not self._watching.is_set():
            seen = high_water_mib(self.popen.pid)
            if seen is not None:
                self.peak_rss_mib = max(self.peak_rss_mib, seen)
            self._watching.wait(0.05)

    def running(self) -> bool:
        """Still running; reaps it (keeping its rusage for `wait`) when it has ended."""
        if self._ended is None:
            pid, status, usage = os.wait4(self.popen.pid, os.WNOHANG)
            if pid:
                self._watching.set()
                self._ended = (status, usage, time.perf_counter())
        return self._ended is None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self._ended is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> Ran:
        """Waits up to `timeout` seconds, then kills it (and says so in the result's code)."""
        if self._ended is None:
            timer = threading.Timer(timeout, self.signal, args=(signal.SIGKILL,))
            timer.start()
            try:
                _pid, status, usage = os.wait4(self.popen.pid, 0)
            finally:
                timer.cancel()
                self._watching.set()
            self._ended = (status, usage, time.perf_counter())
        status, usage, ended = self._ended
        wall = ended - self.started
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        for f in (self._out, self._err):
            f.flush()
            f.seek(0)
        out, err = self._out.read(), self._err.read()
        self._out.close()
        self._err.close()
        peak = self.peak_rss_mib or usage.ru_maxrss / 1024  # a process too short to be read: the kernel's figure
        return Ran(self.popen.returncode, wall, usage.ru_utime + usage.ru_stime, peak, out, err)


def run(cmd: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float = 1800,
        what: str = "") -> Ran:
    """Run to the end; a non-zero exit is a broken benchmark, said with the process's last lines."""
    ran = Process(cmd, env=env, cwd=cwd, log=log).wait(timeout)
    check(ran.code == 0, f"{what or cmd[0]} exited {ran.code} (log {log}):\n{ran.tail()}")
    return ran


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def window_max(instants: Sequence[float], width: float = 1.0) -> int:
    """The most instants inside any window [t, t + width): what a provider counting
    arrivals per second would see at its busiest."""
    times = sorted(instants)
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect_left(times, t + width, lo=i) - i)
    return best


def rate_between(instants: Sequence[float]) -> float:
    """Arrivals per second from the first to the last (n - 1 intervals)."""
    if len(instants) < 2:
        return 0.0
    span = max(instants) - min(instants)
    return (len(instants) - 1) / span if span > 0 else 0.0


def wait_for(condition, timeout: float, every: float = 0.2) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass (for processes, not for tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())


def last_json(text: str) -> dict:
    """The last JSON object a child printed (py-spy prints its own lines around it)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON result in the output:\n{text[-500:]}")
