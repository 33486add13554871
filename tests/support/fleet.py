"""Operating dripcare as a deployment does: `dripcare worker` processes (their logs in files,
so a chatty worker never blocks on a full pipe), a fresh PostgreSQL database per test, a
clinic with a burst of SMS due at once, and a loopback Twilio that lists what it took
(so lookups after a crash find it) and notes when each request arrived."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from dripcare.config.clock import SimulatedClock
from tests.support.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio, free_port, message_json

DRIPCARE = str(Path(sys.executable).parent / "dripcare")
SETTING_PREFIXES = ("DRIPCARE_", "TWILIO_", "SMTP_", "EMAIL_", "DATABASE_URL")
PUBLIC = "https://care.example.org"


def environment(database_url: str, clinic_dir: Path, **settings: str) -> dict[str, str]:
    """The machine's environment without any dripcare setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(DATABASE_URL=database_url, DRIPCARE_CONFIG_DIR=str(clinic_dir / "config"),
               DRIPCARE_MESSAGES_DIR=str(clinic_dir / "messages"))
    env.update(settings)
    return env


def twilio_settings(twilio: FakeTwilio) -> dict[str, str]:
    """The real Twilio transport pointed at the loopback one; status callbacks name each
    message (`m=`), which is how the provider's side counts what it got."""
    return dict(DRIPCARE_SMS_TRANSPORT="twilio", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                TWILIO_FROM_NUMBER=FROM_NUMBER, TWILIO_API_BASE_URL=twilio.url, DRIPCARE_PUBLIC_BASE_URL=PUBLIC,
                DRIPCARE_SECRET_KEY="test-secret-key-0123456789abcdef", DRIPCARE_EMAIL_TRANSPORT="file")


def run(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([DRIPCARE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen:
    """A `dripcare` command left running (a worker, the development web server)."""
    return subprocess.Popen([DRIPCARE, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


class Worker:
    """One `dripcare worker` process, its stderr (the log) in a file."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path):
        self.log_path = log
        self._log = open(log, "w")
        self.process = subprocess.Popen([DRIPCARE, "worker"], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                        stderr=self._log, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no clean stop, no last heartbeat
        self.process.wait(10)
        self._log.close()

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout)
        self._log.close()
        return code


def wait_for(predicate, limit: float = 60.0, every: float = 0.1) -> bool:
    """Polls a real process's observable effect, bounded: waiting on a subprocess is the point."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def answers(url: str) -> bool:
    """A web process's page answers 200: not while it is not listening yet, or booting."""
    import requests

    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def fresh_postgres(server_url: str) -> str:
    """A new, empty database on the suite's PostgreSQL server (postgres:// as platforms give it)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url.replace("postgres://", "postgresql+psycopg://", 1))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


# --- a clinic with a burst of SMS due at once ---------------------------------------------------

def add_burst_campaign(clinic_dir: Path, steps: int, per_day: int = 10, offset: str = "0m") -> str:
    """A campaign of `steps` SMS, all due at enrollment + `offset`, each with its own text, the only
    campaign of the clinic; the daily cap raised so none is skipped. Returns its id."""
    config, messages = clinic_dir / "config", clinic_dir / "messages"
    for other in (config / "campaigns").glob("*.toml"):
        other.unlink()
    clinic = config / "clinic.toml"
    clinic.write_text(re.sub(r"max_per_day = \{[^}]*\}", f"max_per_day = {{ sms = {per_day}, email = {per_day} }}",
                             clinic.read_text(), count=1))
    lines = ['id = "burst"', 'name = "Burst"', 'channels = ["sms"]']
    (messages / "burst").mkdir(parents=True, exist_ok=True)
    for n in range(1, steps + 1):
        lines += ["", "[[steps]]", f'id = "note-{n}"', 'anchor = "enrollment"', f'offset = "{offset}"', 'expires = "72h"']
        (messages / "burst" / f"note-{n}.sms.j2").write_text(
            f"Hi {{{{ patient.first_name }}}}, note {n} of {steps} from {{{{ clinic.sms_name }}}}.\n")
    (config / "campaigns" / "burst.toml").write_text("\n".join(lines) + "\n")
    return "burst"


def patients_csv(path: Path, count: int, campaign: str, session_at: str, timezone: str = "America/New_York") -> Path:
    """`count` patients with SMS consent and distinct numbers, each enrolled in `campaign`."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["external_id", "first_name", "last_name", "phone", "timezone", "consent_sms", "campaign",
                         "session_at"])
        for n in range(count):
            writer.writerow([f"MRN{n:04d}", f"Pat{n}", "Burst", f"+1212555{1000 + n:04d}", timezone, "yes",
                             campaign, session_at])
    return path


# --- the loopback Twilio ----------------------------------------------------------------------

class ListingTwilio(FakeTwilio):
    """Takes every message, lists what it took (a lookup after a crash finds it, as at
    Twilio), stamps it on `clock` (the workers' simulated clock when they run on one) and
    notes when each create request arrived, on the wall clock and the monotonic one."""

    def __init__(self, clock=None):
        super().__init__()
        self.clock = clock
        self.arrivals: list[tuple[float, datetime, dict[str, str]]] = []  # (monotonic, wall, form)
        self._lock = threading.Lock()

    def created_answer(self, form: dict[str, str]):
        with self._lock:
            self.arrivals.append((time.monotonic(), datetime.now(timezone.utc), form))
        status, body = super().created_answer(form)
        if status == 201:
            message = json.loads(body)
            if self.clock is not None:
                message = message_json(message["sid"], message["to"], message["body"], self.clock.now())
                body = json.dumps(message).encode()
            self.stored.append(message)
        return status, body

    def to(self, number: str) -> list[datetime]:
        """When each request for this number arrived (wall clock)."""
        with self._lock:
            return [wall for _, wall, form in self.arrivals if form.get("To") == number]

    def message_ids(self) -> list[int]:
        """The dripcare message id of every create request, from its StatusCallback `m=`."""
        with self._lock:
            forms = [form for _, _, form in self.arrivals]
        return [int(re.search(r"[?&]m=(\d+)", form.get("StatusCallback", "")).group(1)) for form in forms]

    def most_in_one_second(self) -> int:
        """The most requests that reached this server within any one-second window."""
        return len(self.busiest_second())

    def busiest_second(self) -> list[tuple[float, int]]:
        """The requests of the busiest one-second window: (seconds after the first request, message id)."""
        with self._lock:
            stamps = [at for at, _, _ in self.arrivals]
        arrivals = sorted(zip(stamps, self.message_ids()))
        busiest, start = arrivals[:1], 0
        for end, (at, _) in enumerate(arrivals):
            while at - arrivals[start][0] >= 1.0:
                start += 1
            if end - start + 1 > len(busiest):
                busiest = arrivals[start:end + 1]
        first = arrivals[0][0] if arrivals else 0.0
        return [(round(at - first, 3), message_id) for at, message_id in busiest]


def simulated(now_spec: str) -> SimulatedClock:
    """The clock a process started now on DRIPCARE_NOW=`now_spec` runs on."""
    at, _, speed = now_spec.partition(" x")
    return SimulatedClock(datetime.fromisoformat(at.replace("Z", "+00:00")), float(speed or 1))


# --- the web process, as the Procfile starts it -----------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


class Web:
    """The Procfile's `web:` line run from an app folder holding the checkout's Procfile and
    gunicorn.conf.py (the working directory a platform gives it); its log in a file."""

    def __init__(self, env: dict[str, str], app_dir: Path, **extra: str):
        app_dir.mkdir(parents=True, exist_ok=True)
        for name in ("Procfile", "gunicorn.conf.py"):
            (app_dir / name).write_text((ROOT / name).read_text())
        command = next(line.split(":", 1)[1].strip() for line in (app_dir / "Procfile").read_text().splitlines()
                       if line.startswith("web:"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = app_dir / "web.log"
        self._log = open(self.log_path, "w")
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=app_dir,
                                        env={**env, "PORT": str(self.port), "PATH": path, **extra},
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str, **kwargs):
        import requests

        return requests.get(self.url + path, timeout=5, **kwargs)

    def up(self) -> bool:
        return answers(f"{self.url}/healthz")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        code = self.process.wait(30)
        self._log.close()
        return code
