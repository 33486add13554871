"""The pictures (SPEC 9 `--html FILE`): `timeline PATIENT --html` and `report --html`, written by
the CLI as staff run it, then opened in headless Chromium from the file, as someone
double-clicking it would: they render (a PNG screenshot), show the expected labels, log
no error, and ask the network for nothing. The harness is shown to catch a page that does
fetch, so a quiet page is quiet because it loads nothing, not because nobody listened."""

from __future__ import annotations

import re
import struct
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.support.browser import browser  # noqa: F401  (a fixture)
from tests.support.clihelp import ok
from tests.support.courses import cli_rt  # noqa: F401  (a fixture)
from tests.support.dispatching import ScriptedTransport, enroll_sample, fast_forward, make_dispatcher, rows

from dripcare.app import enrollments, patients
from dripcare.app.callbacks import status_callback

# Anything in a page that could make a browser ask a server for something.
EXTERNAL = re.compile(r"https?://|//[a-z0-9]|\bsrc\s*=|\bhref\s*=|\baction\s*=|url\(|@import|<script|<link|<img|"
                      r"<iframe|<object|<embed|<base", re.IGNORECASE)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


COURSE_NOW = {"DRIPCARE_NOW": "2027-03-10T15:00:00Z"}  # the CLI's clock where the course was left


@pytest.fixture
def course(cli_rt, tmp_path):
    """Ana's course played to the day after her first session, then changed by staff:
    her first session completed, the second cancelled, the third moved, email withdrawn."""
    patient, _ = enroll_sample(cli_rt, sessions=("2027-03-09 09:30", "2027-03-11 07:30", "2027-03-15 13:00"))
    dispatcher = make_dispatcher(cli_rt, tmp_path, transports={"sms": ScriptedTransport("sms"),
                                                               "email": ScriptedTransport("email")})
    fast_forward(dispatcher, cli_rt.clock, until=datetime(2027, 3, 10, 15, 0, tzinfo=timezone.utc))
    dispatcher.close()
    welcome = rows(cli_rt.engine, step_id="welcome", channel="sms")[0]
    status_callback(cli_rt, str(welcome.id), welcome.provider_id, "delivered", None)
    enrollments.change_session(cli_rt, "1", by="front desk", action="complete")
    enrollments.change_session(cli_rt, "2", by="front desk", action="cancel")
    enrollments.change_session(cli_rt, "3", by="front desk", at="2027-03-16 13:00")
    patients.set_consent(cli_rt, str(patient.id), "email", False, source="staff", by="front desk")
    return patient


def assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert EXTERNAL.search(html) is None, EXTERNAL.search(html)
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp and "default-src 'none'" in csp.group(1)


def assert_rendered_quietly(rendering, tmp_path, name: str) -> None:
    (tmp_path / f"{name}.png").write_bytes(rendering.png)
    width, height = png_size(rendering.png)
    assert width >= 1100 and height >= 600
    assert rendering.errors == []
    assert rendering.fetched == []


def test_the_timeline_page_shows_the_course_and_loads_nothing(cli, cli_rt, course, browser, tmp_path):
    page = tmp_path / "timeline.html"
    ok(cli("timeline", str(course.id), "--html", str(page), env=COURSE_NOW))
    html = page.read_text()
    assert_self_contained(html)
    rendering = browser.render(page)
    assert_rendered_quietly(rendering, tmp_path, "timeline")
    text = rendering.text
    assert "Course of Ana Diaz (patient 1)" in text
    assert "Times in the patient's zone, America/New_York" in text
    for label in ("session #1 · Tue 9 Mar 09:30 · completed", "session #2 · Thu 11 Mar 07:30 · cancelled",
                  "session #3 · Tue 16 Mar 13:00 · scheduled",
                  "welcome · sms · sent Mon 1 Mar 10:00 EST · delivered",
                  "integration · sms · session #1 · due Wed 10 Mar 18:00 EST · scheduled",
                  "day-of · sms · session #3 · due Tue 16 Mar 10:00 EDT · scheduled",
                  "cancelled: rescheduled", "cancelled: opted_out", "cancelled: session_cancelled",
                  "rescheduled (its session moved; the new date has its own messages)",
                  "session_cancelled (its session was cancelled)",
                  "opted_out (no consent in force on that channel)"):
        assert label in text, label
    # Every message is a labelled mark in the picture.
    marked = re.findall(r"<title>message (\d+): ", rendering.dom)
    assert sorted(map(int, marked)) == sorted(m.id for m in rows(cli_rt.engine, patient_id=course.id))


def test_the_report_page_shows_the_counts_as_charts_and_loads_nothing(cli, course, browser, tmp_path):
    page = tmp_path / "report.html"
    ok(cli("report", "--since", "2027-03-01", "--html", str(page), env=COURSE_NOW))
    html = page.read_text()
    assert_self_contained(html)
    rendering = browser.render(page)
    assert_rendered_quietly(rendering, tmp_path, "report")
    text = rendering.text
    for label in ("Riverbend Ketamine Clinic: how messages fared", "From 2027-03-01 to 2027-03-10",
                  "Counts only: no patient data", "Messages by step and channel", "Campaign ketamine-iv",
                  "Delivery rate", "Opt-outs by source over time", "Replies by kind", "Failures by reason",
                  "welcome", "what-to-expect", "email_unsubscribe", "100.0%"):
        assert label in text, label
    assert re.search(r"<title>2027-03-10 staff: 1</title>", rendering.dom)  # the staff opt-out, on its day
    assert rendering.dom.count("<svg") >= 5
    for phi in ("Ana", "Diaz", "212", "ana@example.org"):
        assert phi not in rendering.dom


def test_a_patient_with_nothing_yet_gets_a_page_that_says_so(cli, browser, tmp_path):
    ok(cli("patient", "add", "--first-name", "Bo", "--last-name", "Li"))
    page = tmp_path / "empty.html"
    ok(cli("timeline", "1", "--html", str(page)))
    rendering = browser.render(page)
    assert "No sessions and no messages yet." in rendering.text
    assert rendering.errors == [] and rendering.fetched == []


def test_a_timeline_page_to_a_place_that_cannot_be_written_is_one_line_and_nothing_else(cli, tmp_path):
    ok(cli("patient", "add", "--first-name", "Bo", "--last-name", "Li"))
    for where, said in ((tmp_path, f"error: --html {tmp_path} is a folder; give a file name like "
                                   f"{tmp_path / 'page.html'}"),
                        (tmp_path / "missing" / "t.html", f"error: cannot write --html {tmp_path / 'missing' / 't.html'}"
                                                          ": No such file or directory")):
        r = cli("timeline", "1", "--html", str(where))
        assert (r.code, r.out, r.err.strip().splitlines()) == (1, "", [said])


class _Counting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def listening():
    """A loopback server that notes every request it gets (a page that fetched would show here)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    _Counting.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Counting.hits
    server.shutdown()
    server.server_close()


def test_the_harness_catches_a_page_that_fetches(browser, tmp_path, listening):
    port, hits = listening
    fetching = tmp_path / "fetching.html"
    fetching.write_text(f'<!DOCTYPE html><html><body><p>hi</p><img src="http://127.0.0.1:{port}/pixel.png">'
                        f"</body></html>")
    rendering = browser.render(fetching)
    assert rendering.fetched == [f"http://127.0.0.1:{port}/pixel.png"] and hits == ["/pixel.png"]
    assert rendering.errors  # the 404 is logged
    # Under our pages' policy the same image is refused before it leaves, and said so.
    blocked = tmp_path / "blocked.html"
    blocked.write_text(fetching.read_text().replace(
        "<html>", "<html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"></head>"))
    rendering = browser.render(blocked)
    assert any("Content Security Policy" in e for e in rendering.errors)
    assert hits == ["/pixel.png"]  # nothing more reached the server
