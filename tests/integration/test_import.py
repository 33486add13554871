"""`dripcare import FILE.csv [--dry-run]` through the real entry point (SPEC 9): every bad row
named on its own line and nothing written, a dry run that only reads, MRNs matched rather
than duplicated, and the plan reconciled for every patient the file touches."""

from __future__ import annotations

import sqlite3

import pytest
from tests.support.clihelp import js, ok

HEADER = "external_id,first_name,last_name,phone,email,timezone,consent_sms,consent_email,campaign,session_at,status"


@pytest.fixture
def csv_file(tmp_path):
    """Write rows under a header; `bom` and `crlf` as a spreadsheet's "CSV UTF-8" would."""
    def write(*rows: str, header: str = HEADER, name: str = "patients.csv", bom=False, crlf=False):
        end = "\r\n" if crlf else "\n"
        text = end.join((header, *rows)) + end
        path = tmp_path / name
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        return str(path)
    return write


def error_lines(r) -> list[str]:
    assert r.code == 1, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), r.err
    return [line[len("error: "):] for line in lines]


def one_line(r) -> str:
    lines = error_lines(r)
    assert len(lines) == 1, r.err
    return lines[0]


def state(cli) -> tuple:
    return js(cli("patient", "list", "--json")), js(cli("outbox", "--json"))


def sessions(cli, patient: str) -> list[dict]:
    return [s for e in js(cli("patient", "show", patient, "--json"))["enrollments"] for s in e["sessions"]]


ADA = "MRN-1,Ada,Moss,(780) 555-0123,ada@example.org,,yes,yes,ketamine-iv,2027-03-08 10:00,"


# --- a good file ---------------------------------------------------------------------------------

def test_bom_and_crlf_file_imports_patients_sessions_consent_and_plans(cli, csv_file, db):
    path = csv_file(ADA, "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,",
                    "MRN-2,Bo,Li,+1 780 555 0199,,America/Toronto,Y,,ketamine-iv,2027-03-09 09:00,",
                    bom=True, crlf=True)
    r = ok(cli("import", path, "--by", "front desk"))
    assert "imported patients.csv: 2 patients added, 0 updated, 2 enrollments, 3 sessions" in r.out
    patients = js(cli("patient", "list", "--json"))
    assert [(p["external_id"], p["first_name"], p["phone"], p["timezone"], p["consent"]) for p in patients] == [
        ("MRN-1", "Ada", "+17805550123", "America/Edmonton", {"sms": True, "email": True}),
        ("MRN-2", "Bo", "+17805550199", "America/Toronto", {"sms": True, "email": False})]
    assert len(sessions(cli, "mrn:MRN-1")) == 2
    consent = db("SELECT patient_id, channel, source, evidence, by FROM consent ORDER BY id")
    assert [tuple(c.values()) for c in consent] == [
        (1, "sms", "import", "import patients.csv line 2", "front desk"),
        (1, "email", "import", "import patients.csv line 2", "front desk"),
        (2, "sms", "import", "import patients.csv line 4", "front desk")]
    # The plan is reconciled for every touched patient: welcome now, one day-of per session.
    for mrn, day_ofs in (("mrn:MRN-1", 2), ("mrn:MRN-2", 1)):
        timeline = js(cli("timeline", mrn, "--json"))
        assert any(m["step"] == "welcome" and m["status"] == "scheduled" for m in timeline)
        assert sum(m["step"] == "day-of" for m in timeline) == day_ofs


def test_optional_columns_and_defaults(cli, csv_file):
    path = csv_file("MRN-9,Cy,Ng,Cee,es,yes,iv,Suite 2,45,ketamine-iv,2027-03-08 10:00",
                    header="external_id,first_name,last_name,preferred_name,locale,discreet,modality,location,"
                           "duration,campaign,session_at")
    ok(cli("import", path))
    p = js(cli("patient", "show", "mrn:MRN-9", "--json"))
    assert (p["preferred_name"], p["locale"], p["discreet"], p["timezone"]) == ("Cee", "es", True, "America/Edmonton")
    assert p["consent"] == {"sms": False, "email": False}
    assert p["enrollments"][0]["sessions"][0]["starts_at"] == "2027-03-08T10:00:00-07:00"


def test_header_only_names_first_and_last_name_and_column_order_is_free(cli, csv_file):
    ok(cli("import", csv_file("Moss,Ada", "Li,Bo", header=" Last_Name , FIRST_NAME ")))
    assert [(p["first_name"], p["last_name"], p["external_id"]) for p in js(cli("patient", "list", "--json"))] == [
        ("Ada", "Moss", None), ("Bo", "Li", None)]


@pytest.mark.parametrize("spelling, value", [
    ("yes", True), ("YES", True), ("true", True), ("True", True), ("y", True), ("Y", True), ("1", True),
    ("no", False), ("No", False), ("false", False), ("FALSE", False), ("n", False), ("N", False), ("0", False),
    ("", False)])
def test_booleans_in_every_spelling(cli, csv_file, spelling, value):
    path = csv_file(f"MRN-1,Ada,Moss,7805550123,ada@example.org,{spelling},{spelling},{spelling}",
                    header="external_id,first_name,last_name,phone,email,discreet,consent_sms,consent_email")
    ok(cli("import", path))
    p = js(cli("patient", "show", "1", "--json"))
    assert (p["discreet"], p["consent"]) == (value, {"sms": value, "email": value})


def test_session_at_with_and_without_offset(cli, csv_file):
    path = csv_file("MRN-1,Ada,Moss,,,America/New_York,,,ketamine-iv,2027-03-08 10:00,",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-09T10:00:00Z,",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-10T10:00:00-07:00,")
    ok(cli("import", path))
    # Shown in the patient's zone: local without an offset, the instant given with one.
    assert [s["starts_at"] for s in sessions(cli, "1")] == [
        "2027-03-08T10:00:00-05:00", "2027-03-09T05:00:00-05:00", "2027-03-10T12:00:00-05:00"]


def test_cancelled_and_completed_rows(cli, csv_file):
    path = csv_file("MRN-1,Ada,Moss,7805550123,,,yes,,ketamine-iv,2027-03-08 10:00,completed",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,Cancelled",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-12 10:00,")
    ok(cli("import", path))
    booked = sessions(cli, "1")
    assert [s["status"] for s in booked] == ["completed", "cancelled", "scheduled"]
    cancelled = booked[1]["id"]
    timeline = js(cli("timeline", "1", "--json"))
    # A cancelled session plans nothing; the others get their day-of text.
    assert not [m for m in timeline if m["session_id"] == cancelled and m["status"] == "scheduled"]
    assert {m["session_id"] for m in timeline if m["step"] == "day-of"} == {booked[0]["id"], booked[2]["id"]}


def test_enroll_without_a_session(cli, csv_file):
    ok(cli("import", csv_file("Ada,Moss,ketamine-iv", header="first_name,last_name,campaign")))
    assert js(cli("patient", "show", "1", "--json"))["enrollments"][0]["campaign"] == "ketamine-iv"
    assert [m["step"] for m in js(cli("timeline", "1", "--json"))] == []  # no phone, no email, no consent


# --- all or nothing --------------------------------------------------------------------------------

def test_every_bad_row_is_named_and_nothing_is_written(cli, csv_file, db):
    ok(cli("patient", "add", "--first-name", "Eve", "--last-name", "Ro", "--phone", "7805550111",
           "--consent", "sms", "--external-id", "MRN-0"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    before, consents = state(cli), db("SELECT * FROM consent")
    path = csv_file(
        ADA,                                                                        # 2: fine
        "MRN-3,Bo,Li,123,,,,,ketamine-iv,2027-03-09 09:00,",                        # 3: phone
        "MRN-4,Cy,Ng,,not-an-email,Mars/Olympus,maybe,,ketamine-iv,2027-03-09 09:00,",  # 4: email, zone, bool
        "MRN-5,Di,Oz,,,,,,ketamine-iv,2027-03-14 02:30,",                           # 5: DST gap
        "MRN-6,Ed,Po,,,,,,ketamine-xyz,2027-03-09 09:00,",                          # 6: campaign
        "MRN-7,Fa,Qi,,,,,,,2027-03-09 09:00,",                                      # 7: session without campaign
        "MRN-8,Gu,Ra,,,,,,ketamine-iv,next tuesday,done",                           # 8: session_at, status
        "MRN-0,,,,,,,,ketamine-iv,2027-03-08 10:00,scheduled",                      # 9: fine (booked already)
    )
    lines = error_lines(cli("import", path))
    assert lines == [
        "line 3, phone: '123' is not a valid number for CA or its +country code",
        "line 4, email: 'not-an-email' is not valid: " + lines[1].split("is not valid: ", 1)[1],
        "line 5, session_at: '2027-03-14 02:30' does not exist in America/Edmonton (clocks skip it for daylight "
        "saving); pick a time outside the gap",
        "line 6, campaign: 'ketamine-xyz' is not a campaign in config/campaigns (known: ketamine-iv)",
        "line 7, campaign: empty; a session (session_at) is booked in a campaign",
        "line 8, status: 'done' is not one of scheduled, completed, cancelled, no_show; session_at: 'next tuesday' "
        "is not a date and time like 2027-06-10 09:30 (local to the patient) or 2027-06-10T15:30:00Z",
        "6 bad rows in patients.csv; nothing was imported"]
    assert "timezone: 'Mars/Olympus' is not an IANA time zone" in lines[1]
    assert "consent_sms: 'maybe' is not yes/no, true/false, y/n or 1/0" in lines[1]
    assert state(cli) == before and db("SELECT * FROM consent") == consents


def test_a_bad_row_found_only_in_the_database_also_writes_nothing(cli, csv_file):
    ok(cli("patient", "add", "--first-name", "Eve", "--last-name", "Ro", "--external-id", "MRN-0"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    ok(cli("session", "complete", "1"))
    before = state(cli)
    path = csv_file(ADA, "MRN-0,,,,,,yes,,ketamine-iv,2027-03-08 10:00,scheduled")
    assert error_lines(cli("import", path)) == [
        "line 3, consent_sms: yes, but the patient has no phone to send to; status: session 1 at that time is "
        "already completed; the file cannot make it scheduled",
        "1 bad row in patients.csv; nothing was imported"]
    assert state(cli) == before


def test_rows_of_one_patient_must_agree(cli, csv_file):
    path = csv_file(ADA, "MRN-1,Ada,Moss,7805550124,,,no,,ketamine-iv,2027-03-08 10:00,")
    assert error_lines(cli("import", path))[0] == (
        "line 3, phone: differs from line 2 for the same external_id 'MRN-1'; consent_sms: differs from line 2 for "
        "the same external_id 'MRN-1'; session_at: the same session as line 2")


def test_a_new_patient_needs_names(cli, csv_file):
    assert error_lines(cli("import", csv_file("MRN-1,Ada,,,,,,,,,")))[0] == (
        "line 2, last_name: empty; a new patient needs a first and last name")


@pytest.mark.parametrize("header, row, expected", [
    ("first_name,last_name,duration", "Ada,Moss,90",
     "line 2, duration: '90' given without session_at; it describes a session"),
    ("first_name,last_name,campaign,session_at,duration", "Ada,Moss,ketamine-iv,2027-03-08 10:00,0",
     "line 2, duration: '0' must be above zero"),
    ("first_name,last_name,locale", "Ada,Moss,english please", "line 2, locale: 'english please' is not a locale "
                                                               "like en, es or fr-CA"),
    ("first_name,last_name", "Ada,Moss,extra", "line 2, 3 values but the header names 2 columns (a comma inside "
                                              "a value needs quotes)"),
])
def test_bad_cells(cli, csv_file, header, row, expected):
    assert error_lines(cli("import", csv_file(row, header=header))) == [
        expected, "1 bad row in patients.csv; nothing was imported"]
    assert js(cli("patient", "list", "--json")) == []


def test_a_quoted_row_over_several_lines_is_named_by_its_first_line(cli, csv_file):
    path = csv_file('Ada,Moss,"Suite 2\nRiver Rd",ketamine-iv,2027-03-08 10:00', "Bo,Li,,ketamine-iv,soon",
                    header="first_name,last_name,location,campaign,session_at")
    assert error_lines(cli("import", path))[0].startswith("line 4, session_at: 'soon' is not a date and time")


@pytest.mark.parametrize("header, expected", [
    ("first_name,last_name,mrn", "patients.csv line 1: unknown column 'mrn'; the columns are: external_id, "),
    ("first_name,last_name,mrn,dob", "patients.csv line 1: unknown columns 'mrn', 'dob'; the columns are: "),
    ("first_name,email", "patients.csv line 1: missing column 'last_name'; every patient needs a first and last name"),
    ("first_name,last_name,session_at", "patients.csv line 1: missing column 'campaign'; sessions (session_at) are "
                                        "booked in a campaign"),
    ("first_name,last_name,Phone,phone", "patients.csv line 1: column 'phone' appears more than once"),
    ("first_name,last_name,", "patients.csv line 1: column 3 has no name; the columns are: "),
])
def test_bad_header_is_one_line_naming_the_column(cli, csv_file, header, expected):
    line = one_line(cli("import", csv_file("Ada,Moss,x", header=header)))
    assert line.startswith(expected), line
    assert js(cli("patient", "list", "--json")) == []


def test_bad_files_are_one_line(cli, tmp_path):
    (tmp_path / "latin1.csv").write_bytes("first_name,last_name\nJos\xe9,Ruiz\n".encode("latin-1"))
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_bytes(b"first_name,last_name\r\n\r\n,\r\n")
    assert one_line(cli("import", str(tmp_path / "latin1.csv"))) == (
        'latin1.csv line 2 is not UTF-8 text; save the file as "CSV UTF-8"')
    assert one_line(cli("import", str(tmp_path / "empty.csv"))).startswith("empty.csv line 1 must name the columns")
    assert one_line(cli("import", str(tmp_path / "header.csv"))) == "header.csv has a header but no rows to import"
    assert one_line(cli("import", str(tmp_path / "missing.csv"))) == f"{tmp_path / 'missing.csv'} not found"
    assert cli("import").code == 2  # a missing argument is a usage error


# --- dry run ------------------------------------------------------------------------------------

def test_dry_run_shows_what_would_be_done_and_writes_nothing(cli, csv_file, db):
    before = state(cli)
    path = csv_file(ADA, "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,completed", "MRN-2,Bo,Li,,,,,,,,")
    r = ok(cli("import", path, "--dry-run"))
    assert r.out.splitlines() == [
        "line 2: add patient Ada Moss (external_id 'MRN-1'), consent sms email",
        "line 2:   enroll in ketamine-iv",
        "line 2:     book session Mon 2027-03-08 10:00 MST (scheduled)",
        "line 3:     book session Wed 2027-03-10 10:00 MST (completed)",
        "line 4: add patient Bo Li (external_id 'MRN-2')",
        "dry run, nothing written: would import 2 patients added, 0 updated, 1 enrollments, 2 sessions"]
    assert state(cli) == before and db("SELECT * FROM consent") == []


def test_dry_run_of_a_bad_file_fails_like_the_import(cli, csv_file):
    assert error_lines(cli("import", csv_file("MRN-3,Bo,Li,123,,,,,,,"), "--dry-run"))[0].startswith(
        "line 2, phone: '123' is not a valid number")


# --- importing again ----------------------------------------------------------------------------

def test_reimport_of_the_same_file_duplicates_nothing(cli, csv_file, db):
    path = csv_file(ADA, "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,")
    ok(cli("import", path))
    before, consents = state(cli), db("SELECT * FROM consent")
    r = ok(cli("import", path))
    assert "0 patients added, 1 updated, 0 enrollments, 0 sessions; messages: no changes" in r.out
    assert state(cli) == before and db("SELECT * FROM consent") == consents
    dry = ok(cli("import", path, "--dry-run")).out
    assert "line 2:   in enrollment 1 (ketamine-iv)" in dry and "already booked, unchanged" in dry


def test_known_mrn_updates_the_patient_and_joins_the_enrollment(cli, csv_file, tmp_path):
    ok(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--phone", "7805550123",
           "--consent", "sms", "--external-id", "MRN-1"))
    ok(cli("enroll", "mrn:MRN-1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    with sqlite3.connect(tmp_path / "cli.db") as c:  # a provider once said the old number cannot receive
        c.execute("UPDATE patient SET phone_invalid = 1")
    path = csv_file("MRN-1,Addie,,7805550999,,,,,ketamine-iv,2027-03-08 10:00,completed",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-15 10:00,")
    r = ok(cli("import", path))
    assert "0 patients added, 1 updated, 0 enrollments, 1 sessions (1 changed)" in r.out
    p = js(cli("patient", "show", "mrn:MRN-1", "--json"))
    # A new number: its invalid flag goes, and so does consent (given for the old one).
    assert (p["first_name"], p["last_name"], p["phone"], p["phone_invalid"]) == ("Addie", "Moss", "+17805550999", False)
    assert p["consent"]["sms"] is False
    assert len(p["enrollments"]) == 1
    assert [s["status"] for s in p["enrollments"][0]["sessions"]] == ["completed", "scheduled"]


def test_explicit_no_revokes_consent_and_cancels_pending_texts(cli, csv_file, db):
    path = csv_file(ADA)
    ok(cli("import", path))
    assert any(m["channel"] == "sms" and m["status"] == "scheduled" for m in js(cli("timeline", "1", "--json")))
    withdrawn = csv_file("MRN-1,,,no", header="external_id,first_name,last_name,consent_sms", name="withdrawn.csv")
    ok(cli("import", withdrawn, "--by", "dr k"))
    sms = [m for m in js(cli("timeline", "1", "--json")) if m["channel"] == "sms"]
    assert sms and all(m["status"] == "cancelled" and m["reason"] == "opted_out" for m in sms)
    assert db("SELECT granted, source, evidence, by FROM consent WHERE channel = 'sms' ORDER BY id DESC LIMIT 1") == [
        {"granted": 0, "source": "import", "evidence": "import withdrawn.csv line 2", "by": "dr k"}]
