"""Every change tells the front desk what it did and when nothing will go out (SPEC 9): the
counts per channel, the next message in the patient's time, a `note:` for each channel left
with nothing and why; and what makes no sense is refused (exit 1, one line, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clihelp import dump, js, notes, ok, one_line, said

NOW = "2027-03-01T15:00:00Z"  # the `cli` fixture's DRIPCARE_NOW: 10:00 in New York
SESSIONS = ["--session", "2027-03-08 10:00", "--session", "2027-03-10 07:30", "--session", "2027-03-12 10:00"]


def add(cli, *extra: str) -> int:
    return js(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--timezone", "America/New_York",
                  "--json", *extra))["id"]


def add_reachable(cli) -> int:
    return add(cli, "--phone", "+1 780 555 0123", "--email", "ada@example.org", "--consent", "sms",
               "--consent", "email")


def timeline(cli, patient="1") -> list[dict]:
    return js(cli("timeline", patient, "--json"))


def planned(rows, channel=None) -> list[dict]:
    return [r for r in rows if r["status"] == "scheduled" and channel in (None, r["channel"])]


def session_ids(cli, patient="1") -> list[int]:
    return [s["id"] for e in js(cli("patient", "show", patient, "--json"))["enrollments"] for s in e["sessions"]]


# --- what a change did --------------------------------------------------------------------------

def test_enroll_says_how_many_were_planned_per_channel_and_when_the_next_goes(cli):
    add_reachable(cli)
    out = said(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    rows = timeline(cli)
    sms, email = len(planned(rows, "sms")), len(planned(rows, "email"))
    assert sms and email
    assert f"{sms + email} planned ({sms} SMS, {email} email)" in out, out
    first = min(planned(rows), key=lambda r: r["due_at"])
    assert first["step"] == "welcome"
    assert "next message: Mon 1 Mar 2027 10:00 EST, " in out and "(welcome)" in out
    assert "note:" not in out


def test_enroll_json_carries_the_enrollment_and_what_it_did(cli):
    add_reachable(cli)
    e = js(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS, "--json"))
    assert (e["id"], e["patient_id"], e["campaign"], e["status"]) == (1, 1, "ketamine-iv", "active")
    rows = timeline(cli)
    assert e["effect"]["planned"] == {"sms": len(planned(rows, "sms")), "email": len(planned(rows, "email"))}
    assert e["effect"]["next_message"]["at"][:16] == "2027-03-01T10:00"  # the clock runs on from DRIPCARE_NOW
    assert e["effect"]["notes"] == []


def test_reschedule_says_what_was_cancelled_and_planned(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    before = {r["id"]: r for r in timeline(cli)}
    second = session_ids(cli)[1]
    r = cli("session", "reschedule", str(second), "--at", "2027-03-11 11:00")
    after = timeline(cli)
    pending = ("scheduled", "skipped")
    cancelled = [x for x in after if x["status"] == "cancelled" and before[x["id"]]["status"] in pending]
    new = [x for x in after if x["status"] == "scheduled" and (
        x["id"] not in before or before[x["id"]]["status"] in ("cancelled", "skipped"))]
    out = said(r)
    assert out.startswith(f"session {second} moved to Thu 11 Mar 2027 11:00 EST")
    assert f"{len(cancelled)} cancelled (" in out and "rescheduled" in out
    assert f"{len(new)} planned (" in out


def test_a_change_that_changes_no_message_says_so(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    assert "messages: no change" in said(cli("consent", "grant", "1", "--channel", "sms"))


# --- note: lines, exit 0 ------------------------------------------------------------------------------

def test_no_sms_consent_recorded_is_noted(cli):
    add(cli, "--phone", "+1 780 555 0123", "--email", "ada@example.org", "--consent", "email")
    r = cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS)
    assert r.code == 0
    assert notes(r) == ["no SMS will go out for ketamine-iv: no SMS consent recorded; record it with "
                        "`dripcare consent grant 1 --channel sms`"]


def test_withdrawn_consent_is_noted_as_withdrawn(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    r = cli("consent", "revoke", "1", "--channel", "sms", "--note", "asked at the desk")
    assert "cancelled" in said(r) and "opted_out" in said(r)
    assert notes(r) == ["no SMS will go out for ketamine-iv: SMS consent was withdrawn; if the patient gives it "
                        "again, record it with `dripcare consent grant 1 --channel sms`"]


def test_no_email_address_is_noted(cli):
    add(cli, "--phone", "+1 780 555 0123", "--consent", "sms")
    r = cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS)
    assert notes(r) == ["no email will go out for ketamine-iv: patient 1 has no email address; add one with "
                        "`dripcare patient update 1 --email ADDRESS`"]


def test_a_session_already_in_the_past_is_noted(cli):
    add_reachable(cli)
    r = cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-02-26 10:00")
    assert r.code == 0
    assert notes(r)[0] == "session 1 (Fri 26 Feb 2027 10:00 EST) is already in the past: nothing is sent before it"
    # The welcome still goes out; the session's own messages are history.
    assert {x["step"] for x in planned(timeline(cli))} <= {"welcome", "course-complete", "follow-up-month"}


def test_a_channel_left_with_nothing_because_every_session_passed_is_noted(cli):
    add(cli, "--phone", "+1 780 555 0123", "--consent", "sms")
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    later = {"DRIPCARE_NOW": "2027-06-01T15:00:00Z"}  # after even the follow-up month has expired
    r = cli("session", "add", "1", "--at", "2027-04-19 10:00", "--past", env=later)
    assert notes(r) == [
        "session 2 (Mon 19 Apr 2027 10:00 EDT) is already in the past: nothing is sent before it",
        "no SMS will go out for ketamine-iv: every session is already in the past",
        "no email will go out for ketamine-iv: patient 1 has no email address; add one with "
        "`dripcare patient update 1 --email ADDRESS`"]
    assert "next message: none planned" in said(r)


def test_consent_dropped_by_a_new_number_is_noted(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    sms = len([x for x in timeline(cli) if x["channel"] == "sms" and x["status"] in ("scheduled", "skipped")])
    r = cli("patient", "update", "1", "--phone", "+1 780 555 0199")
    assert f"{sms} cancelled ({sms} SMS)" in said(r)
    assert notes(r) == ["no SMS will go out for ketamine-iv: SMS consent was given for the old phone number and "
                        "does not carry over; record it for the new one with `dripcare consent grant 1 --channel sms`"]
    p = js(cli("patient", "update", "1", "--phone", "+1 780 555 0199", "--json"))
    assert p["consent"] == {"sms": False, "email": True} and "effect" in p


def test_a_paused_enrollment_is_noted(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    r = cli("enrollment", "pause", "1")
    assert "next message: none planned" in said(r)
    assert notes(r) == ["enrollment 1 (ketamine-iv) is paused: nothing goes out until `dripcare enrollment resume 1`"]


# --- recording history -----------------------------------------------------------------------------

def test_a_past_session_with_past_is_history_and_plans_nothing_before_now(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    r = cli("session", "add", "1", "--at", "2027-02-27 10:00", "--past", "--external-id", "APT-7")
    assert r.code == 0
    sid = max(session_ids(cli))
    assert notes(r)[0].startswith(f"session {sid} (Sat 27 Feb 2027 10:00 EST) is already in the past")
    now = "2027-03-01T10:00:00-05:00"
    mine = [x for x in timeline(cli) if x["session_id"] == sid]
    assert mine and all(x["due_at"] >= now for x in planned(mine))
    assert js(cli("patient", "show", "1", "--json"))["enrollments"][0]["sessions"][0]["external_id"] == "APT-7"
    ok(cli("session", "complete", str(sid)))


# --- refusals: exit 1, one line, nothing written ------------------------------------------------------

@pytest.fixture
def booked(cli):
    add_reachable(cli)
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", *SESSIONS))
    ok(cli("session", "add", "1", "--at", "2027-03-14 10:00", "--external-id", "APT-1"))
    return cli


BIG = "99999999999999999999"
REFUSED = [
    (["session", "complete", "1"], "session 1 has not started"),
    (["session", "no-show", "2"], "session 2 has not started"),
    (["session", "add", "1", "--at", "2027-02-27 10:00"], "in the past"),
    (["session", "reschedule", "1", "--at", "2027-03-01 09:59"], "add --past"),
    (["session", "add", "1", "--at", "2027-03-20 10:00", "--external-id", "APT-1"], "session 4"),
    (["session", "reschedule", "2", "--at", "2027-03-20 10:00", "--external-id", "APT-1"], "already belongs"),
    (["patient", "update", "1", "--first-name", ""], "--first-name is empty"),
    (["patient", "update", "1", "--last-name", "   "], "--last-name is empty"),
    (["patient", "update", "1", "--first-name", "Ada\x1b[31m"], "unprintable"),
    (["patient", "update", "1", "--first-name", "\u202eadA"], "U+202E"),
    (["patient", "update", "1", "--first-name", "A\x07"], "unprintable"),
    (["patient", "update", "1", "--last-name", "x" * 101], "at most 100"),
    (["patient", "add", "--first-name", "", "--last-name", "Li"], "--first-name is empty"),
    (["patient", "add", "--first-name", "Bo", "--last-name", "Li\x00"], "unprintable"),
    (["patient", "update", "1", "--locale", "klingonese"], "'klingonese' is not a language tag"),
    (["patient", "add", "--first-name", "Bo", "--last-name", "Li", "--locale", "en us"], "language tag"),
    (["patient", "show", BIG], f"no patient {BIG}"),
    (["timeline", BIG], f"no patient {BIG}"),
    (["patient", "update", BIG, "--first-name", "X"], f"no patient {BIG}"),
    (["consent", "grant", BIG, "--channel", "sms"], f"no patient {BIG}"),
    (["enroll", BIG, "--campaign", "ketamine-iv"], f"no patient {BIG}"),
    (["session", "add", BIG, "--at", "2027-03-20 10:00"], f"no patient {BIG}"),
    (["session", "cancel", BIG], f"no session {BIG}"),
    (["enrollment", "pause", BIG], f"no enrollment {BIG}"),
    (["message", "cancel", BIG], f"no message {BIG}"),
    (["inbox", "handle", BIG], f"no reply {BIG}"),
    (["outbox", "--patient", BIG], f"no patient {BIG}"),
    (["outbox", "--since", "2027-13-01"], "--since"),
    (["outbox", "--limit", "0"], "--limit"),
    (["outbox", "--campaign", "nope"], "'nope'"),
]


@pytest.mark.parametrize("args, says", REFUSED, ids=[" ".join(a)[:50] for a, _ in REFUSED])
def test_nonsense_is_refused_with_one_line_and_nothing_written(booked, tmp_path, args, says):
    before = dump(tmp_path / "cli.db")
    line = one_line(booked(*args))
    assert line.startswith("error: ") and says in line, line
    assert dump(tmp_path / "cli.db") == before


def test_a_session_that_has_started_can_be_completed(booked):
    started = {"DRIPCARE_NOW": "2027-03-08T15:30:00Z"}  # 10:30 in New York, session 1 began at 10:00
    assert "session 1 (Mon 8 Mar 2027 10:00 EST) completed" in said(booked("session", "complete", "1", env=started))


# --- no clinic files: one line, nothing created --------------------------------------------------------

EVERY_COMMAND = [
    ["patient", "list"], ["patient", "add", "--first-name", "A", "--last-name", "B"], ["patient", "show", "1"],
    ["patient", "update", "1", "--first-name", "A"], ["consent", "grant", "1", "--channel", "sms"],
    ["enroll", "1", "--campaign", "ketamine-iv"], ["session", "add", "1", "--at", "2027-03-20 10:00"],
    ["session", "cancel", "1"], ["enrollment", "pause", "1"], ["timeline", "1"], ["outbox"],
    ["message", "cancel", "1"], ["replan", "--all"], ["inbox"], ["inbox", "handle", "1"],
    ["campaigns", "list"], ["campaigns", "show", "ketamine-iv"], ["templates", "check"], ["db", "upgrade"],
    ["status"], ["channel", "pause", "sms"], ["import", "patients.csv"], ["report"], ["audit", "1"],
    ["web"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=[" ".join(a) for a in EVERY_COMMAND])
def test_without_clinic_files_every_command_says_so_and_creates_nothing(cli, tmp_path, monkeypatch, args):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    (empty / "patients.csv").write_text("first_name,last_name\nAda,Moss\n")
    env = {"DRIPCARE_CONFIG_DIR": str(empty / "config"), "DRIPCARE_MESSAGES_DIR": str(empty / "messages"),
           "DATABASE_URL": f"sqlite:///{empty / 'dripcare.db'}"}
    line = one_line(cli(*args, env=env))
    assert "dripcare init" in line and "DRIPCARE_CONFIG_DIR" in line, line
    assert sorted(p.name for p in empty.iterdir()) == ["patients.csv"]


@pytest.mark.parametrize("args", [["dispatch", "--once"], ["worker"]])
def test_without_clinic_files_sending_says_so_and_creates_nothing(tmp_path, args):
    # As a process: these set up signal handling and the worker lock, which need a real one.
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIPCARE_", "DATABASE_URL"))}
    r = subprocess.run([str(Path(sys.executable).parent / "dripcare"), *args], cwd=empty, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "dripcare init" in errors[0], r.stderr
    assert list(empty.iterdir()) == []


def test_init_and_help_need_no_clinic_files(cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    env = {"DRIPCARE_CONFIG_DIR": str(empty / "config"), "DATABASE_URL": f"sqlite:///{empty / 'dripcare.db'}"}
    ok(cli("status", "--help", env=env))
    ok(cli("--version", env=env))
    assert list(empty.iterdir()) == []
    ok(cli("init", env=env))
    assert (empty / "config" / "clinic.toml").is_file() and not (empty / "dripcare.db").exists()
