"""The real `dripcare` entry point on a real SQLite file (SPEC 9): bad input is one line, exit 1,
nothing written; usage errors exit 2; enroll -> reschedule -> cancel -> timeline with reasons."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from tests.support.clihelp import dump, js, ok, one_line

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
SIX = ["2027-03-08 10:00", "2027-03-10 07:30", "2027-03-12 10:00",
       "2027-03-14 10:00", "2027-03-16 10:00", "2027-03-18 10:00"]
MESSAGE_FIELDS = {"id", "step", "channel", "session_id", "status", "reason", "due_at", "expires_at",
                  "next_attempt_at", "sent_at", "attempts", "provider_id"}
PATIENT_FIELDS = {"id", "external_id", "first_name", "last_name", "preferred_name", "phone", "email",
                  "timezone", "locale", "discreet", "consent"}


def add_patient(cli, *extra: str, by: str = "reception") -> dict:
    return js(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--preferred-name", "Addie",
                  "--phone", "(780) 555-0123", "--email", "Ada.Moss@Example.org", "--timezone", "America/New_York",
                  "--external-id", "MRN-1", "--consent", "sms", "--consent", "email",
                  "--consent-source", "signed form", "--by", by, "--json", *extra))


def enroll_six(cli, patient="1", by="reception") -> dict:
    args = ["enroll", patient, "--campaign", "ketamine-iv", "--modality", "iv", "--by", by, "--json"]
    for s in SIX:
        args += ["--session", s]
    return js(cli(*args))


def timeline(cli, patient="1") -> list[dict]:
    return js(cli("timeline", patient, "--json"))


def sessions(cli, patient="1") -> list[dict]:
    return [s for e in js(cli("patient", "show", patient, "--json"))["enrollments"] for s in e["sessions"]]


def local(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- patient add ---------------------------------------------------------------------------------

def test_patient_add_json(cli):
    p = add_patient(cli)
    assert PATIENT_FIELDS <= set(p)
    assert p["id"] == 1 and p["external_id"] == "MRN-1"
    assert (p["first_name"], p["last_name"], p["preferred_name"]) == ("Ada", "Moss", "Addie")
    assert p["phone"] == "+17805550123"  # E.164, region CA from clinic.toml
    assert p["email"].lower() == "ada.moss@example.org"
    assert (p["timezone"], p["locale"], p["discreet"]) == ("America/New_York", "en", False)
    assert p["consent"] == {"sms": True, "email": True}
    listed = js(cli("patient", "list", "--json"))
    assert [x["id"] for x in listed] == [1] and PATIENT_FIELDS <= set(listed[0])
    assert js(cli("patient", "show", "mrn:MRN-1", "--json"))["id"] == 1
    assert js(cli("patient", "show", "MRN-1", "--json"))["id"] == 1


def test_patient_add_defaults_and_no_consent(cli):
    p = js(cli("patient", "add", "--first-name", "Bo", "--last-name", "Li", "--email", "bo@example.org",
               "--discreet", "--json"))
    assert (p["timezone"], p["locale"], p["discreet"], p["phone"]) == ("America/Edmonton", "en", True, None)
    assert p["consent"] == {"sms": False, "email": False}


# --- bad input: exit 1, one line, nothing written ------------------------------------------------

@pytest.fixture
def second_campaign(clinic_dir):
    """ketamine-im: a second campaign this patient is not in."""
    source = clinic_dir / "config" / "campaigns" / "ketamine-iv.toml"
    (clinic_dir / "config" / "campaigns" / "ketamine-im.toml").write_text(
        source.read_text().replace('id = "ketamine-iv"', 'id = "ketamine-im"'))
    shutil.copytree(clinic_dir / "messages" / "ketamine-iv", clinic_dir / "messages" / "ketamine-im")


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("enrolled-template")


def world(cli) -> tuple:
    return ok(cli("patient", "list", "--json")).out, ok(cli("outbox", "--json")).out


@pytest.fixture
def enrolled(cli, second_campaign, tmp_path, template_dir):
    """Patient 1 (MRN-1, New York) in ketamine-iv with six sessions: built through the CLI once
    per module, then copied (sqlite backup, WAL included) into each test's database."""
    template = template_dir / "enrolled.db"
    if not template.exists():
        add_patient(cli)
        enroll_six(cli)
        with sqlite3.connect(tmp_path / "cli.db") as source, sqlite3.connect(template) as target:
            source.backup(target)
        (template_dir / "world.json").write_text(json.dumps(world(cli)))
    else:
        with sqlite3.connect(template) as source, sqlite3.connect(tmp_path / "cli.db") as target:
            source.backup(target)
    cli.world = tuple(json.loads((template_dir / "world.json").read_text()))
    return cli


NEW = ["--first-name", "Bo", "--last-name", "Li"]
BAD_INPUT = [
    (["session", "add", "1", "--at", "2027-03-20 10:00", "--modality", "pill"], "'pill'"),
    (["enroll", "99", "--campaign", "ketamine-iv"], "no patient 99"),
    (["timeline", "mrn:NOPE"], "NOPE"),
    (["session", "add", "42", "--at", "2027-03-20 10:00"], "no patient 42"),
    (["consent", "grant", "mrn:NOBODY", "--channel", "sms"], "NOBODY"),
    (["patient", "update", "77", "--first-name", "X"], "no patient 77"),
    (["patient", "add", *NEW, "--phone", "12"], "'12'"),
    (["patient", "update", "1", "--phone", "555"], "'555'"),
    (["patient", "add", *NEW, "--email", "nobody@@example.org"], "'nobody@@example.org'"),
    (["patient", "update", "1", "--email", "not an email"], "'not an email'"),
    (["patient", "add", *NEW, "--timezone", "Mars/Olympus"], "'Mars/Olympus'"),
    (["patient", "update", "1", "--timezone", "America/Nowhere"], "'America/Nowhere'"),
    (["patient", "add", *NEW, "--external-id", "MRN-1"], "'MRN-1'"),
    (["patient", "add", *NEW, "--consent", "fax"], "'fax'"),
    (["patient", "add", *NEW, "--phone", "+1 780 555 0144", "--consent", "email"], "no email"),
    (["enroll", "1", "--campaign", "ketamine-im", "--session", "next tuesday"], "'next tuesday'"),
    (["session", "add", "1", "--at", "2027-02-30 10:00"], "'2027-02-30 10:00'"),
    (["session", "reschedule", "2", "--at", "soon"], "'soon'"),
    (["session", "add", "1", "--at", "2027-03-14 02:30"], "'2027-03-14 02:30'"),
    (["enroll", "1", "--campaign", "ketamine-im", "--session", "2027-03-20 10:00",
      "--session", "2027-03-14 02:30"], "'2027-03-14 02:30'"),
    (["session", "reschedule", "2", "--at", "2027-03-14 02:30"], "'2027-03-14 02:30'"),
    (["session", "add", "1", "--at", "2027-03-20 10:00", "--campaign", "ketamine-im"], "ketamine-im"),
    (["enroll", "1", "--campaign", "nope"], "'nope'"),
    (["session", "add", "1", "--at", "2027-03-20 10:00", "--campaign", "nope"], "nope"),
    (["session", "add", "1", "--at", "2027-03-20 10:00", "--duration", "long"], "'long'"),
    (["enroll", "1", "--campaign", "ketamine-im", "--duration", "0"], "'0'"),
    (["consent", "revoke", "1", "--channel", "fax"], "'fax'"),
    (["consent", "grant", "1", "--channel", "sms", "--source", "rumour"], "'rumour'"),
    (["session", "cancel", "999"], "no session 999"),
    (["enrollment", "pause", "999"], "no enrollment 999"),
    (["enrollment", "resume", "1"], "active"),
    (["message", "cancel", "999"], "no message 999"),
    (["message", "retry", "1"], "scheduled"),
    (["outbox", "--status", "lost"], "'lost'"),
]


@pytest.mark.parametrize("args, quoted", BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_writes_nothing(enrolled, tmp_path, args, quoted):
    cli = enrolled
    rows = dump(tmp_path / "cli.db")
    line = one_line(cli(*args))
    assert line.startswith("error: ") and quoted in line
    assert dump(tmp_path / "cli.db") == rows  # every table: stricter than the JSON views


def test_bad_inputs_leave_patient_list_and_outbox_as_they_were(enrolled):
    for args, _ in BAD_INPUT[::3]:
        one_line(enrolled(*args))
    assert world(enrolled) == enrolled.world


def test_dst_gap_line_says_so(enrolled):
    line = one_line(enrolled("session", "add", "1", "--at", "2027-03-14 02:30"))
    assert "daylight saving" in line or "does not exist" in line


def test_fold_is_accepted_as_the_first(enrolled):
    ok(enrolled("session", "add", "1", "--at", "2027-11-07 01:30"))
    new = [s for s in sessions(enrolled) if s["starts_at"].startswith("2027-11-07")]
    assert [s["starts_at"] for s in new] == ["2027-11-07T01:30:00-04:00"]


def test_time_with_offset_is_taken_as_given(enrolled):
    ok(enrolled("session", "add", "1", "--at", "2027-03-20T15:00:00Z"))
    assert "2027-03-20T11:00:00-04:00" in [s["starts_at"] for s in sessions(enrolled)]


@pytest.mark.parametrize("args", [
    ["patient", "list", "--bogus"],
    ["timeline", "1", "--verbose"],
    ["patient", "add", "--first-name", "A"],           # missing --last-name
    ["enroll", "1"],                                    # missing --campaign
    ["timeline"],                                       # missing PATIENT
    ["session", "reschedule", "1"],                     # missing --at
])
def test_usage_errors_exit_2(enrolled, tmp_path, args):
    rows = dump(tmp_path / "cli.db")
    assert enrolled(*args).code == 2
    assert dump(tmp_path / "cli.db") == rows


def test_replan_without_target_is_a_usage_error(enrolled):
    assert enrolled("replan").code == 2


# --- the flow: enroll six sessions -> timeline -> reschedule -> cancel -> timeline -------------------

def check_timeline_shape(rows: list[dict]) -> None:
    assert rows
    for r in rows:
        assert MESSAGE_FIELDS <= set(r), set(r)
        for key in ("due_at", "expires_at"):
            t = local(r[key])
            assert t.utcoffset() == t.astimezone(NY).utcoffset(), r  # the patient's offset at that instant
        assert r["reason"] is None or isinstance(r["reason"], str)
        assert r["session_id"] is None if r["step"] == "welcome" else isinstance(r["session_id"], int)
    keys = [(local(r["due_at"]), r["id"]) for r in rows]
    assert keys == sorted(keys)


def find(rows, **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def test_enroll_reschedule_cancel_timeline(cli):
    add_patient(cli)
    e = enroll_six(cli)
    assert e["id"] == 1
    s = sessions(cli)
    assert [x["starts_at"][:16] for x in s] == [t.replace(" ", "T") for t in SIX]
    sid = [x["id"] for x in s]

    rows = timeline(cli)
    check_timeline_shape(rows)
    assert {r["status"] for r in rows} <= {"scheduled", "skipped"}
    assert all(r["next_attempt_at"] is None and r["sent_at"] is None and r["attempts"] == 0
               and r["provider_id"] is None for r in rows)
    # what-to-expect the day before, 17:00 local, on each side of the spring-forward
    wte = {r["session_id"]: r["due_at"] for r in find(rows, step="what-to-expect", channel="sms")}
    assert wte[sid[3]] == "2027-03-13T17:00:00-05:00"
    assert wte[sid[4]] == "2027-03-15T17:00:00-04:00"
    # 07:30 session: day-of (-3h = 04:30, quiet) goes back to 20:59 the evening before
    [day_of] = find(rows, step="day-of", session_id=sid[1])
    assert day_of["due_at"] == "2027-03-09T20:59:00-05:00" and day_of["expires_at"] == "2027-03-10T07:30:00-05:00"
    assert local(find(rows, step="follow-up-month", channel="email")[0]["due_at"]).strftime("%H:%M") == "10:00"

    # reschedule session 3 (3/12 10:00) to 3/13 11:00
    old = [r for r in find(rows, session_id=sid[2]) if r["status"] == "scheduled"]
    assert {r["step"] for r in old} == {"what-to-expect", "day-of", "integration"}
    ok(cli("session", "reschedule", str(sid[2]), "--at", "2027-03-13 11:00", "--by", "scheduler"))
    rows = timeline(cli)
    check_timeline_shape(rows)
    by_id = {r["id"]: r for r in rows}
    for r in old:
        assert (by_id[r["id"]]["status"], by_id[r["id"]]["reason"]) == ("cancelled", "rescheduled")
    new = [r for r in find(rows, session_id=sid[2]) if r["status"] != "cancelled"]
    assert {r["step"] for r in new} == {"what-to-expect", "day-of", "integration"}
    assert {r["id"] for r in new}.isdisjoint(by_id[r["id"]]["id"] for r in old)
    dues = {(r["step"], r["channel"]): r["due_at"] for r in new}
    assert dues[("what-to-expect", "sms")] == "2027-03-12T17:00:00-05:00"
    assert dues[("day-of", "sms")] == "2027-03-13T08:00:00-05:00"
    assert dues[("integration", "email")] == "2027-03-14T18:00:00-04:00"

    # cancel session 4 (the spring-forward Sunday)
    pending4 = [r["id"] for r in find(rows, session_id=sid[3]) if r["status"] in ("scheduled", "skipped")]
    assert pending4
    ok(cli("session", "cancel", str(sid[3]), "--by", "scheduler"))
    rows = timeline(cli)
    check_timeline_shape(rows)
    by_id = {r["id"]: r for r in rows}
    assert {(by_id[i]["status"], by_id[i]["reason"]) for i in pending4} == {("cancelled", "session_cancelled")}
    assert [x["status"] for x in sessions(cli)][3] == "cancelled"

    text = ok(cli("timeline", "1")).out
    assert "rescheduled" in text and "session_cancelled" in text and "America/New_York" in text
    # outbox --json: the same message fields plus patient_id, oldest due first
    out = js(cli("outbox", "--json"))
    assert len(out) == len(rows) and all((MESSAGE_FIELDS | {"patient_id"}) <= set(r) for r in out)
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert [r["id"] for r in js(cli("outbox", "--status", "cancelled", "--json"))] == \
        [r["id"] for r in rows if r["status"] == "cancelled"]


def test_a_second_enrollment_numbers_its_sessions_on_from_the_first_everywhere(cli):
    """One course numbering: `patient show` (text and JSON) and `timeline`."""
    add_patient(cli)
    enroll_six(cli)
    ok(cli("enroll", "1", "--campaign", "esketamine-intranasal", "--session", "2027-04-20 10:00"))
    numbers = [s["number"] for s in sessions(cli)]
    assert numbers == list(range(1, 8))
    later = sessions(cli)[-1]
    text = cli("patient", "show", "1").out
    assert re.search(rf"^7 +{later['id']} ", text, re.M), text
    shown = cli("timeline", "1").out
    assert re.search(rf"^7 +{later['id']} ", shown, re.M)  # the sessions above the messages
    assert re.search(r"prep-week +(sms|email) +7 ", shown)  # and the message's session column


def test_session_complete_and_no_show(cli):
    add_patient(cli)
    enroll_six(cli)
    sid = [x["id"] for x in sessions(cli)]
    started = {"DRIPCARE_NOW": "2027-03-10T12:45:00Z"}  # 07:45 in New York: session 2 began at 07:30
    ok(cli("session", "no-show", str(sid[1]), env=started))
    rows = timeline(cli)
    assert {r["reason"] for r in find(rows, session_id=sid[1]) if r["status"] == "cancelled"} == {"no_show"}
    ok(cli("session", "complete", str(sid[0]), env=started))  # session 1 began on the 8th
    assert sessions(cli)[0]["status"] == "completed"
    one_line(cli("session", "cancel", str(sid[0]), env=started))  # already completed


def test_enrollment_pause_resume_withdraw(cli):
    add_patient(cli)
    enroll_six(cli)
    pending = {r["id"]: r["due_at"] for r in timeline(cli) if r["status"] == "scheduled"}
    ok(cli("enrollment", "pause", "1"))
    rows = {r["id"]: r for r in timeline(cli)}
    assert {(rows[i]["status"], rows[i]["reason"]) for i in pending} == {("cancelled", "paused")}
    ok(cli("enrollment", "resume", "1"))
    rows = {r["id"]: r for r in timeline(cli)}
    # the same ids, at the same times (rows already due, like the welcome, go out now again)
    ahead = {i: due for i, due in pending.items() if local(due) > datetime(2027, 3, 1, 15, 1, tzinfo=UTC)}
    assert len(ahead) > 20
    assert {i: rows[i]["due_at"] for i in ahead} == ahead
    assert {rows[i]["status"] for i in pending} == {"scheduled"}
    assert len(rows) == len(timeline(cli))
    ok(cli("enrollment", "withdraw", "1"))
    assert {(r["status"], r["reason"]) for r in timeline(cli)} == {("cancelled", "withdrawn")}
    one_line(cli("enrollment", "resume", "1"))


def test_enrollment_complete_plans_on_complete_steps(cli, clinic_dir):
    path = clinic_dir / "config" / "campaigns" / "ketamine-iv.toml"
    path.write_text(path.read_text().replace('course_end = "last_booked"', 'course_end = "on_complete"'))
    add_patient(cli)
    enroll_six(cli)
    assert not find(timeline(cli), step="course-complete")
    ok(cli("enrollment", "complete", "1"))
    done = find(timeline(cli), step="course-complete")
    assert done and {r["status"] for r in done} == {"scheduled"}
    assert {r["session_id"] for r in done} == {sessions(cli)[-1]["id"]}


LATER = {"DRIPCARE_NOW": "2027-03-01T15:05:00Z"}
LATER_STILL = {"DRIPCARE_NOW": "2027-03-01T15:10:00Z"}


def test_consent_revoke_and_grant(cli, db):
    add_patient(cli)
    enroll_six(cli)
    sms = [r["id"] for r in timeline(cli) if r["channel"] == "sms" and r["status"] == "scheduled"]
    ok(cli("consent", "revoke", "1", "--channel", "sms", "--note", "asked at the desk", "--by", "nurse", env=LATER))
    rows = {r["id"]: r for r in timeline(cli)}
    assert {(rows[i]["status"], rows[i]["reason"]) for i in sms} == {("cancelled", "opted_out")}
    assert js(cli("patient", "show", "1", "--json"))["consent"] == {"sms": False, "email": True}
    ok(cli("consent", "grant", "1", "--channel", "sms", "--by", "nurse", env=LATER_STILL))
    assert js(cli("patient", "show", "1", "--json"))["consent"] == {"sms": True, "email": True}
    rows = {r["id"]: r for r in timeline(cli)}
    assert {rows[i]["status"] for i in sms} == {"scheduled"}
    kinds = db("SELECT kind FROM message_event WHERE message_id = ? ORDER BY id", sms[-1])
    assert [k["kind"] for k in kinds] == ["planned", "cancelled", "reopened"]
    consent = db("SELECT channel, granted, source, evidence, by FROM consent WHERE channel = 'sms' ORDER BY id")
    assert [(c["granted"], c["by"]) for c in consent] == [(1, "reception"), (0, "nurse"), (1, "nurse")]
    assert consent[0]["evidence"] == "signed form" and consent[1]["evidence"] == "asked at the desk"


def test_consent_grant_after_revoke_wins_on_a_restarted_clock(cli, tmp_path):
    add_patient(cli)
    ok(cli("consent", "revoke", "1", "--channel", "sms", env={"DRIPCARE_NOW": "2027-03-01T15:00:00.5Z"}))
    ok(cli("consent", "grant", "1", "--channel", "sms", env={"DRIPCARE_NOW": "2027-03-01T15:00:00Z"}))
    assert js(cli("patient", "show", "1", "--json"))["consent"]["sms"] is True


def test_changed_phone_needs_consent_again(cli):
    add_patient(cli)
    enroll_six(cli)
    sms = [r["id"] for r in timeline(cli) if r["channel"] == "sms" and r["status"] == "scheduled"]
    email = [r["id"] for r in timeline(cli) if r["channel"] == "email" and r["status"] == "scheduled"]
    p = js(cli("patient", "update", "1", "--phone", "+1 780 555 0199", "--json"))
    assert p["phone"] == "+17805550199" and p["consent"] == {"sms": False, "email": True}
    rows = {r["id"]: r for r in timeline(cli)}
    assert {rows[i]["status"] for i in sms} == {"cancelled"}
    assert {rows[i]["reason"] for i in sms} <= {"opted_out", "contact_invalid"}
    assert {rows[i]["status"] for i in email} == {"scheduled"}
    # the same number again is no change
    ok(cli("patient", "update", "1", "--phone", "+17805550199"))
    ok(cli("consent", "grant", "1", "--channel", "sms"))
    rows = {r["id"]: r for r in timeline(cli)}
    assert {rows[i]["status"] for i in sms} == {"scheduled"}


def test_message_cancel_and_retry(cli, db):
    add_patient(cli)
    enroll_six(cli)
    target = next(r for r in timeline(cli) if r["status"] == "scheduled")
    ok(cli("message", "cancel", str(target["id"]), "--by", "nurse"))
    row = next(r for r in timeline(cli) if r["id"] == target["id"])
    assert (row["status"], row["reason"]) == ("cancelled", "staff")
    one_line(cli("message", "cancel", str(target["id"])))           # not pending any more
    ok(cli("replan", "--all"))
    row = next(r for r in timeline(cli) if r["id"] == target["id"])
    assert (row["status"], row["reason"]) == ("cancelled", "staff")  # planning leaves it
    last = db("SELECT kind, status, reason, by FROM message_event WHERE message_id = ? ORDER BY id DESC LIMIT 1",
              target["id"])[0]
    assert last == {"kind": "cancelled", "status": "cancelled", "reason": "staff", "by": "nurse"}
    scheduled = next(r for r in timeline(cli) if r["status"] == "scheduled")
    line = one_line(cli("message", "retry", str(scheduled["id"])))
    assert "scheduled" in line


def test_retry_of_a_failed_message(cli, db, tmp_path):
    add_patient(cli)
    enroll_six(cli)
    target = next(r for r in timeline(cli) if r["status"] == "scheduled" and r["step"] == "what-to-expect")
    with sqlite3.connect(tmp_path / "cli.db") as connection:
        connection.execute("UPDATE message SET status='failed', reason='twilio:21211', ever_claimed=1, attempts=5 "
                           "WHERE id = ?", (target["id"],))
    ok(cli("message", "retry", str(target["id"]), "--by", "nurse"))
    row = next(r for r in timeline(cli) if r["id"] == target["id"])
    assert (row["status"], row["attempts"]) == ("scheduled", 0)
    assert db("SELECT by FROM message_event WHERE message_id = ? ORDER BY id DESC LIMIT 1", target["id"]) == [{"by": "nurse"}]


def test_retry_refuses_rows_cancelled_by_planning(cli):
    add_patient(cli)
    enroll_six(cli)
    ok(cli("consent", "revoke", "1", "--channel", "sms"))
    opted_out = next(r for r in timeline(cli) if r["reason"] == "opted_out")
    before = ok(cli("outbox", "--json")).out
    one_line(cli("message", "retry", str(opted_out["id"])))
    assert ok(cli("outbox", "--json")).out == before


def test_replan_all_and_after_campaign_edit(cli, clinic_dir):
    add_patient(cli)
    enroll_six(cli)
    before = timeline(cli)
    r = ok(cli("replan", "--all", env=LATER))
    assert "no changes" in r.out
    assert timeline(cli) == before
    path = clinic_dir / "config" / "campaigns" / "ketamine-iv.toml"
    path.write_text(path.read_text().replace('at = "17:00"', 'at = "16:00"'))
    ok(cli("replan", "1"))
    after = {r["id"]: r for r in timeline(cli)}
    for r in find(before, step="what-to-expect", status="scheduled"):
        assert local(after[r["id"]]["due_at"]).strftime("%H:%M") == "16:00"
    path.write_text(path.read_text().replace('[[steps]]\nid = "integration"', '[[steps]]\nid = "reflection"'))
    (clinic_dir / "messages" / "ketamine-iv" / "integration.sms.j2").rename(
        clinic_dir / "messages" / "ketamine-iv" / "reflection.sms.j2")
    (clinic_dir / "messages" / "ketamine-iv" / "integration.email.md.j2").rename(
        clinic_dir / "messages" / "ketamine-iv" / "reflection.email.md.j2")
    ok(cli("replan", "--all"))
    rows = timeline(cli)
    assert {r["reason"] for r in find(rows, step="integration")} == {"step_removed"}
    assert find(rows, step="reflection") and {r["status"] for r in find(rows, step="reflection")} <= {"scheduled", "skipped"}


def test_enrollment_step_is_due_at_enrolled_at(cli):
    add_patient(cli)
    e = enroll_six(cli)
    welcome = find(timeline(cli), step="welcome")
    assert welcome and {local(r["due_at"]) for r in welcome} == {local(e["enrolled_at"])}


def test_by_recorded_in_events_and_consent(cli, db):
    add_patient(cli, by="dr-who")
    enroll_six(cli, by="dr-who")
    assert {c["by"] for c in db("SELECT by FROM consent")} == {"dr-who"}
    assert {e["by"] for e in db("SELECT by FROM message_event")} == {"dr-who"}
    sid = sessions(cli)[0]["id"]
    ok(cli("session", "cancel", str(sid), "--by", "front-desk"))
    assert {e["by"] for e in db("SELECT by FROM message_event WHERE kind = 'cancelled'")} == {"front-desk"}


def test_by_defaults_to_the_os_user(cli, db, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "osuser")
    ok(cli("patient", "add", "--first-name", "A", "--last-name", "B", "--phone", "+1 780 555 0123",
           "--consent", "sms"))
    assert [c["by"] for c in db("SELECT by FROM consent")] == ["osuser"]


# --- setup commands ----------------------------------------------------------------------------------

def test_init_writes_and_refuses_to_overwrite(cli, tmp_path):
    target = tmp_path / "newclinic"
    ok(cli("init", str(target)))
    assert (target / "config" / "clinic.toml").is_file()
    assert (target / "config" / "campaigns" / "ketamine-iv.toml").is_file()
    assert (target / "messages" / "ketamine-iv").is_dir()
    clinic = (target / "config" / "clinic.toml")
    clinic.write_text(clinic.read_text() + "\n# edited by the clinic\n")
    line = one_line(cli("init", str(target)))
    assert "exists" in line
    assert clinic.read_text().endswith("# edited by the clinic\n")
    # the written files load
    r = cli("campaigns", "list", env={"DRIPCARE_CONFIG_DIR": str(target / "config"),
                                      "DRIPCARE_MESSAGES_DIR": str(target / "messages")})
    assert ok(r) and "ketamine-iv" in r.out


def test_init_in_working_directory(cli, tmp_path, monkeypatch):
    work = tmp_path / "here"
    work.mkdir()
    monkeypatch.chdir(work)
    ok(cli("init"))
    assert (work / "config" / "clinic.toml").is_file() and (work / "messages").is_dir()


def test_db_upgrade(cli, tmp_path, db):
    assert not (tmp_path / "cli.db").exists()
    ok(cli("db", "upgrade"))
    assert (tmp_path / "cli.db").exists()
    tables = {r["name"] for r in db("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"patient", "consent", "enrollment", "treatment_session", "message", "message_event",
            "alembic_version"} <= tables
    ok(cli("db", "upgrade"))  # again: nothing to do


def test_first_use_creates_the_sqlite_file(cli, tmp_path):
    assert js(cli("patient", "list", "--json")) == []
    assert (tmp_path / "cli.db").exists()
