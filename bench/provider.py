"""A loopback Twilio for throughput runs: the Messages API answered as
tests/support/twilio_fakes.py answers it (the same resource JSON), after a latency, in a
process of its own so its work never competes with the sender's interpreter.

    python bench/provider.py --latency 0.1 [--jitter 0.05 0.2] [--error-rate 0.01] [--seed 14]

It prints its port on the first line, keeps connections alive (HTTP/1.1, as Twilio
does), and records when each create request arrived (its own monotonic clock) with the
message id from the StatusCallback (`m=`). GET /bench/arrivals returns them."""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json$")
TOO_MANY = {"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429",
            "status": 429}


class Provider:
    def __init__(self, latency: float, jitter: tuple[float, float] | None, error_rate: float, seed: int):
        self.latency, self.jitter, self.error_rate = latency, jitter, error_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str, int]] = []  # (monotonic, message id, status answered)
        self.in_flight = self.most_in_flight = 0

    def plan(self) -> tuple[float, bool]:
        """This request's latency and whether it is refused with a 429."""
        with self.lock:
            latency = self.random.uniform(*self.jitter) if self.jitter else self.latency
            return latency, self.random.random() < self.error_rate

    def created(self, arrived: float, form: dict[str, str]) -> tuple[int, bytes]:
        from tests.support.twilio_fakes import message_json

        latency, refuse = self.plan()
        message_id = parse_qs(urlsplit(form.get("StatusCallback", "")).query).get("m", [form.get("Body", "")[:40]])[0]
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            number = len(self.arrivals) + 1
            self.arrivals.append((arrived, message_id, 429 if refuse else 201))
        time.sleep(max(0.0, latency - (time.monotonic() - arrived)))
        with self.lock:
            self.in_flight -= 1
        if refuse:
            return 429, json.dumps(TOO_MANY).encode()
        body = message_json(f"SM{number:032x}", form.get("To", ""), form.get("Body", ""), datetime.now(timezone.utc))
        return 201, json.dumps(body).encode()

    def listing(self) -> tuple[int, bytes]:
        """Lookups before a resend (rows in doubt): nothing was taken for them."""
        return 200, json.dumps({"messages": [], "page": 0, "page_size": 50, "start": 0, "end": 0, "uri": "",
                                "first_page_uri": "", "next_page_uri": None, "previous_page_uri": None}).encode()

    def report(self) -> tuple[int, bytes]:
        with self.lock:
            return 200, json.dumps({"arrivals": self.arrivals, "most_in_flight": self.most_in_flight}).encode()


def handler_for(provider: Provider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API allows
        # Headers and body go out as two writes: without TCP_NODELAY the second waits for the
        # client's delayed ACK (40 ms on Linux), a stall of this stand-in, not of the sender.
        disable_nagle_algorithm = True

        def do_POST(self):
            arrived = time.monotonic()
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if MESSAGES.match(urlsplit(self.path).path):
                self._answer(*provider.created(arrived, form))
            else:
                self._answer(404, b'{"code": 20404, "message": "not found", "status": 404}')

        def do_GET(self):
            path = urlsplit(self.path).path
            if path == "/bench/arrivals":
                self._answer(*provider.report())
            elif MESSAGES.match(path):
                self._answer(*provider.listing())
            else:
                self._answer(404, b'{"code": 20404, "message": "not found", "status": 404}')

        def _answer(self, status: int, body: bytes) -> None:
            from tests.support.twilio_fakes import answer_json

            answer_json(self, status, body)  # a worker stopping may have gone away

        def log_message(self, *args):
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 4 workers x 32 sends may connect at once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each answer")
    parser.add_argument("--jitter", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="a latency drawn evenly between LOW and HIGH seconds instead")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of creates answered 429")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support
    provider = Provider(args.latency, tuple(args.jitter) if args.jitter else None, args.error_rate, args.seed)
    server = Server(("127.0.0.1", 0), handler_for(provider))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


# --- the benchmark's side -------------------------------------------------------------------

class LoopbackTwilio:
    """Starts the provider process; `arrivals()` reads what it saw; `stop()` ends it."""

    def __init__(self, workdir: Path, name: str, *args: str):
        from measure import PYTHON, Process, check, clean_env, wait_for

        self.process = Process([PYTHON, str(Path(__file__)), *args], env=clean_env({}), cwd=workdir,
                               log=workdir / f"provider-{name}.log")
        port_file = self.process.log.with_suffix(".out")
        check(wait_for(lambda: port_file.read_text().strip(), 20), f"the loopback provider did not start: "
              f"{self.process.log.read_text()[-500:]}")
        self.url = f"http://127.0.0.1:{int(port_file.read_text().split()[0])}"

    def report(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(self.url + "/bench/arrivals", timeout=10) as answer:
            return json.loads(answer.read())

    def arrivals(self) -> list[tuple[float, str, int]]:
        return [tuple(a) for a in self.report()["arrivals"]]

    def count(self) -> int:
        return len(self.report()["arrivals"])

    def stop(self) -> None:
        self.process.signal()
        self.process.wait(10)


if __name__ == "__main__":
    sys.exit(main())
