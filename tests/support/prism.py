"""The `prism_url` fixture: Prism mocking Twilio's Messages API from Twilio's own OpenAPI file.

Started once per session with `--errors`, so a request that breaks the contract gets a
422 instead of a made-up success. `make test` installs it (`npm ci` from
tests/support/npm/package-lock.json) and fetches the spec (tests/support/twilio_spec.py).
Missing Prism or spec skips the contract tests, unless DRIPCARE_REQUIRE_CONTRACT=1 (CI),
which fails them instead.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.twilio_fakes import free_port
from tests.support.twilio_spec import FETCH, FULL_SPEC, write_messages_spec

REPO = Path(__file__).resolve().parents[2]
PRISM = REPO / ".cache/prism/node_modules/.bin/prism"
INSTALL = "make .cache/prism/.installed"
START_TIMEOUT = 60.0


def _missing(reason: str) -> None:
    if os.environ.get("DRIPCARE_REQUIRE_CONTRACT") == "1":
        pytest.fail(f"{reason} (DRIPCARE_REQUIRE_CONTRACT=1)", pytrace=False)
    pytest.skip(reason)


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True  # any HTTP answer (a 404 here) means it is serving
    except OSError:
        return False
    finally:
        connection.close()


def _wait_until_serving(process: subprocess.Popen, port: int, log) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"Prism exited with {process.returncode}:\n{log.read().decode(errors='replace')[-2000:]}")
        if _answers(port):
            return
        time.sleep(0.2)
    pytest.fail(f"Prism did not answer on port {port} within {START_TIMEOUT:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def prism_url(tmp_path_factory):
    if not FULL_SPEC.is_file():
        _missing(f"Twilio's OpenAPI file is not at {FULL_SPEC} (run `{FETCH}` in {REPO})")
    if not PRISM.exists() or shutil.which("node") is None:
        _missing(f"Prism is not installed (run `{INSTALL}` in {REPO})")
    spec = write_messages_spec(tmp_path_factory.mktemp("twilio") / "twilio_messages_v2010.json")
    port = free_port()
    with tempfile.TemporaryFile() as log:
        command = [str(PRISM), "mock", "--errors", "-h", "127.0.0.1", "-p", str(port), str(spec)]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_until_serving(process, port, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)
