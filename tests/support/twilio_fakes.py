"""A loopback stand-in for Twilio's Messages endpoint, for the answers Prism cannot give.

Prism checks that our requests honour Twilio's contract; this server gives the answers a
test scripts (429, 21610, a 500, a stall past the client's timeout) and a list endpoint
holding the messages a lookup should or should not find. Real HTTP through the real SDK.

    with FakeTwilio() as twilio:
        twilio.fail(400, 21610)
        TwilioSms(ACCOUNT_SID, AUTH_TOKEN, from_number=..., api_base_url=twilio.url).send(...)
"""

from __future__ import annotations

import json
import re
import socket
import threading
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "test-auth-token"
SERVICE_SID = "MG0123456789abcdef0123456789abcdef"
FROM_NUMBER = "+15005550006"
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json$")


def message_json(sid: str, to: str, body: str, created: datetime, direction: str = "outbound-api",
                 status: str = "queued") -> dict:
    """A Message resource as Twilio renders it (dates in RFC 2822)."""
    stamp = format_datetime(created.astimezone(timezone.utc), usegmt=True)
    return {"sid": sid, "account_sid": ACCOUNT_SID, "to": to, "from": FROM_NUMBER, "body": body,
            "status": status, "direction": direction, "date_created": stamp, "date_updated": stamp,
            "date_sent": None, "num_segments": "1", "num_media": "0", "error_code": None,
            "error_message": None, "price": None, "price_unit": "USD", "api_version": "2010-04-01",
            "messaging_service_sid": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            "subresource_uris": {}}


def answer_json(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    """A JSON answer, as Twilio's API gives one; a client that went away is not told."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except OSError:
        pass


def free_port() -> int:
    """A loopback port nobody listens on (closed right away: connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeTwilio:
    def __init__(self):
        self.created: list[dict[str, str]] = []  # form fields of every create request
        self.list_queries: list[dict[str, str]] = []
        self.stored: list[dict] = []  # what the list endpoint holds
        self.answer: tuple[int, bytes] | None = None  # None: accept with a fresh SID
        self.delay = 0.0
        self._release = threading.Event()  # cuts a scripted stall short when the test ends
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, status: int, code: int | None = None, message: str = "scripted failure") -> None:
        """Answer every create with this error, as Twilio words it (or a bare body without a code)."""
        if code is None:
            self.answer = (status, b"<html>error</html>")
            return
        body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status}
        self.answer = (status, json.dumps(body).encode())

    def store(self, sid: str, to: str, body: str, created: datetime, direction: str = "outbound-api") -> None:
        self.stored.append(message_json(sid, to, body, created, direction))

    def start(self) -> "FakeTwilio":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Called from the server's threads.
    def created_answer(self, form: dict[str, str]) -> tuple[int, bytes]:
        self.created.append(form)
        if self.delay:
            self._release.wait(self.delay)
        if self.answer is not None:
            return self.answer
        sid = f"SM{len(self.created):032x}"
        return 201, json.dumps(message_json(sid, form.get("To", ""), form.get("Body", ""),
                                            datetime.now(timezone.utc))).encode()

    def list_answer(self, query: dict[str, str]) -> tuple[int, bytes]:
        self.list_queries.append(query)
        if self.answer is not None:
            return self.answer
        found = [m for m in self.stored if m["to"] == query.get("To", m["to"])]
        page = {"messages": found, "page": 0, "page_size": int(query.get("PageSize", 50)), "start": 0,
                "end": max(len(found) - 1, 0), "first_page_uri": "", "next_page_uri": None,
                "previous_page_uri": None, "uri": ""}
        return 200, json.dumps(page).encode()


def _handler_for(fake: FakeTwilio):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            self._answer(fake.created_answer(form))

        def do_GET(self):
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            self._answer(fake.list_answer(query))

        def _answer(self, answer: tuple[int, bytes]) -> None:
            if not _MESSAGES_PATH.match(urlsplit(self.path).path):
                answer = (404, b'{"code": 20404, "message": "not found", "status": 404}')
            answer_json(self, *answer)  # the client may have given up (the timeout test)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake
