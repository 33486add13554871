"""`dripcare import FILE.csv [--dry-run]` through the real entry point (SPEC 9): a clinic's
daily EHR export imported, then the next day's export with moved, cancelled and missing
appointments followed; every bad row named on its own line and nothing written; a dry
run that only reads, per patient; MRNs and appointment ids matched rather than duplicated."""

from __future__ import annotations

import csv
import io
import random
import sqlite3
from datetime import date, timedelta

import pytest
from tests.support.clihelp import js, ok

HEADER = "external_id,first_name,last_name,phone,email,timezone,consent_sms,consent_email,campaign,session_at,status"
EHR_COLUMNS = ("external_id", "first_name", "last_name", "preferred_name", "phone", "email", "timezone", "locale",
               "discreet", "consent_sms", "consent_email", "campaign", "session_id", "session_at", "modality",
               "location", "duration", "status")


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


@pytest.fixture
def snapshot(tmp_path):
    """Every row of every table the import can write, as SQL sees it."""
    def take() -> dict:
        with sqlite3.connect(tmp_path / "cli.db") as c:
            return {t: c.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
                    for t in ("patient", "consent", "enrollment", "treatment_session", "message", "message_event")}
    return take


def sessions(cli, patient: str) -> list[dict]:
    return [s for e in js(cli("patient", "show", patient, "--json"))["enrollments"] for s in e["sessions"]]


ADA = "MRN-1,Ada,Moss,(780) 555-0123,ada@example.org,,yes,yes,ketamine-iv,2027-03-08 10:00,"


# --- a daily EHR export ---------------------------------------------------------------------------

FIRST = ("Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lea", "Max", "Noor", "Oli")
LAST = ("Moss", "Li", "Ng", "O'Hara", "Diaz", "Novak", "Singh", "Côté", "Nguyen", "Tremblay", "García", "Roy")
ZONES = ("", "America/Edmonton", "America/Toronto", "America/Vancouver", "America/Regina")
PHONES = ("(780) 555-01{:02d}", "780-555-01{:02d}", "+1 780 555 01{:02d}")
YES_NO = ("yes", "Y", "TRUE", "1", "no", "")
TIMES = ("09:00", "9:30", "13:00", "15:45")


def ehr_export(patients: int, sessions_each: int = 6, seed: int = 12) -> list[dict]:
    """What a clinic's EHR exports: one row per appointment, the patient's columns repeated,
    ordered by appointment time (not by patient), spreadsheet spellings of yes and no."""
    rng = random.Random(seed)
    rows, appointment = [], 20000
    for i in range(patients):
        first_day = date(2027, 3, 8) + timedelta(days=rng.randint(0, 20))
        patient = {"external_id": f"MRN-{1000 + i}", "first_name": FIRST[i % len(FIRST)],
                   "last_name": LAST[(i * 7) % len(LAST)], "preferred_name": "Jojo" if i % 9 == 4 else "",
                   "phone": PHONES[i % 3].format(i % 100) if i % 11 != 5 else "",
                   "email": f"p{i}@example.org" if i % 7 != 3 else "", "timezone": ZONES[i % len(ZONES)],
                   "locale": "es" if i % 10 == 7 else "", "discreet": "yes" if i % 8 == 2 else "",
                   "consent_sms": YES_NO[i % 6] if i % 11 != 5 else "", "consent_email": YES_NO[(i + 2) % 6]}
        if i % 7 == 3:
            patient["consent_email"] = ""
        day = first_day
        for n in range(sessions_each):
            appointment += 1
            rows.append({**patient, "campaign": "ketamine-iv", "session_id": f"APT-{appointment}",
                         "session_at": f"{day.isoformat()} {TIMES[(i + n) % len(TIMES)]}", "modality": "iv",
                         "location": "Suite 2, 100 River Rd" if n % 2 else "Room 4", "duration": "60",
                         "status": "Cancelled" if (i, n) == (3, 2) else ("scheduled" if n == 0 else "")})
            day += timedelta(days=rng.choice((2, 3, 4)))
    return sorted(rows, key=lambda r: (r["session_at"].replace(" 9:", " 09:"), r["session_id"]))


def write_export(tmp_path, rows: list[dict], name: str = "export.csv") -> str:
    """As "CSV UTF-8" from a spreadsheet: a BOM, CRLF line ends, commas inside values quoted."""
    out = io.StringIO()
    writer = csv.DictWriter(out, EHR_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    return str(path)


def test_a_realistic_500_row_export_imports_and_the_same_file_again_changes_nothing(cli, tmp_path, db, snapshot):
    rows = ehr_export(84)
    assert len(rows) == 504
    path = write_export(tmp_path, rows)
    assert b'"Suite 2, 100 River Rd"' in (tmp_path / "export.csv").read_bytes()
    r = ok(cli("import", path, "--by", "front desk"))
    # Not a terminal: one line, no progress bar.
    assert r.out.splitlines() == [
        "imported export.csv: 84 patients added, 0 updated, 0 unchanged; 84 enrollments; sessions: 504 booked, "
        "0 moved, 0 cancelled, 0 otherwise changed; messages: " + r.out.split("messages: ")[1].strip()]
    assert r.err == ""
    booked = db("SELECT external_id, status, location FROM treatment_session")
    assert {s["external_id"] for s in booked} == {row["session_id"] for row in rows}
    assert sum(s["status"] == "cancelled" for s in booked) == 1
    assert {s["location"] for s in booked} == {"Suite 2, 100 River Rd", "Room 4"}
    patients = db("SELECT external_id, first_name, last_name, timezone, locale, discreet FROM patient ORDER BY id")
    assert len(patients) == 84 and {"Côté", "O'Hara", "García"} <= {p["last_name"] for p in patients}
    assert {p["timezone"] for p in patients} == {z or "America/Edmonton" for z in ZONES}
    assert {p["locale"] for p in patients} == {"en", "es"}
    planned = db("SELECT COUNT(*) AS n FROM message WHERE status = 'scheduled'")[0]["n"]
    assert planned > 1000
    before = snapshot()
    again = ok(cli("import", path, "--by", "front desk"))
    assert again.out.splitlines() == [
        "imported export.csv: 0 patients added, 0 updated, 84 unchanged; 0 enrollments; sessions: 0 booked, "
        "0 moved, 0 cancelled, 0 otherwise changed; messages: no changes"]
    assert snapshot() == before


def test_a_file_written_a_slice_of_patients_at_a_time_plans_what_one_slice_would(cli, tmp_path, monkeypatch):
    """An import is written and planned a slice of patients at a time (memory stays that
    of one slice): the same file in slices of 7 plans exactly what it plans in one."""
    import dripcare.app.importer as importer

    path = write_export(tmp_path, ehr_export(20, sessions_each=2))
    ok(cli("import", path, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'whole.db'}"}))
    monkeypatch.setattr(importer, "APPLY_SLICE", 7)
    sliced = ok(cli("import", path, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'sliced.db'}"}))
    assert "20 patients added" in sliced.out

    def plans(name: str) -> list[tuple]:
        with sqlite3.connect(tmp_path / name) as c:
            return c.execute("SELECT p.external_id, m.step_id, m.channel, substr(m.due_at, 1, 16), m.status, m.reason "
                             "FROM message m JOIN patient p ON p.id = m.patient_id ORDER BY 1, 2, 3, 4").fetchall()

    whole = plans("whole.db")  # to the minute: a step due at once is due when each import ran
    assert len({row[0] for row in whole}) >= 15 and plans("sliced.db") == whole


@pytest.fixture
def day_one(cli, tmp_path):
    """Yesterday's export, imported: three patients, six appointments each."""
    rows = ehr_export(3)
    ok(cli("import", write_export(tmp_path, rows, "monday.csv")))
    return rows


def _row(rows: list[dict], appointment: str) -> dict:
    return next(r for r in rows if r["session_id"] == appointment)


def _session(db, appointment: str) -> dict:
    return db("SELECT * FROM treatment_session WHERE external_id = ?", appointment)[0]


def test_a_moved_appointment_is_rescheduled_and_its_old_reminders_cancelled(cli, tmp_path, db, day_one):
    moved = _row(day_one, "APT-20002")
    old = _session(db, "APT-20002")
    pending_before = db("SELECT id, step_id FROM message WHERE session_id = ? AND status = 'scheduled'", old["id"])
    assert {m["step_id"] for m in pending_before} >= {"what-to-expect", "day-of", "integration"}
    new_day = (date.fromisoformat(moved["session_at"][:10]) + timedelta(days=1)).isoformat()
    moved["session_at"] = f"{new_day} 14:00"
    r = ok(cli("import", write_export(tmp_path, day_one, "tuesday.csv")))
    assert "0 patients added, 1 updated, 2 unchanged; 0 enrollments; sessions: 0 booked, 1 moved" in r.out
    now = _session(db, "APT-20002")
    assert now["id"] == old["id"] and now["starts_at"] != old["starts_at"]
    assert len(db("SELECT id FROM treatment_session WHERE external_id = 'APT-20002'")) == 1
    for m in pending_before:
        row = db("SELECT status, reason FROM message WHERE id = ?", m["id"])[0]
        assert (row["status"], row["reason"]) == ("cancelled", "rescheduled"), m
    again = db("SELECT step_id, anchor_at FROM message WHERE session_id = ? AND status = 'scheduled'", old["id"])
    assert {m["step_id"] for m in again} >= {"what-to-expect", "day-of", "integration"}
    assert {m["anchor_at"] for m in again} == {now["starts_at"]}


def test_a_cancelled_appointment_cancels_its_messages(cli, tmp_path, db, day_one):
    _row(day_one, "APT-20004")["status"] = "cancelled"
    session = _session(db, "APT-20004")
    pending = [m["id"] for m in db("SELECT id FROM message WHERE session_id = ? AND status = 'scheduled'",
                                   session["id"])]
    assert pending
    r = ok(cli("import", write_export(tmp_path, day_one, "tuesday.csv")))
    assert "sessions: 0 booked, 0 moved, 1 cancelled" in r.out
    assert _session(db, "APT-20004")["status"] == "cancelled"
    assert {(m["status"], m["reason"]) for m in db(
        f"SELECT status, reason FROM message WHERE id IN ({','.join(map(str, pending))})")} == {
        ("cancelled", "session_cancelled")}


def test_a_no_show_in_the_file_cancels_what_was_still_to_come_for_it(cli, csv_file, db):
    header = "external_id,first_name,last_name,phone,consent_sms,campaign,session_id,session_at,status"
    ok(cli("import", csv_file("MRN-1,Ada,Moss,7805550123,yes,ketamine-iv,A-1,2027-02-28 10:00,",
                              "MRN-1,Ada,Moss,7805550123,yes,ketamine-iv,A-2,2027-03-08 10:00,", header=header)))
    first = _session(db, "A-1")
    pending = db("SELECT id FROM message WHERE session_id = ? AND status = 'scheduled'", first["id"])
    assert pending  # the evening-after text of yesterday's session is still to go
    r = ok(cli("import", csv_file("MRN-1,Ada,Moss,7805550123,yes,ketamine-iv,A-1,2027-02-28 10:00,no-show",
                                  header=header, name="next.csv")))
    assert "1 cancelled" in r.out
    assert _session(db, "A-1")["status"] == "no_show"
    assert [(m["status"], m["reason"]) for m in db("SELECT status, reason FROM message WHERE id = ?",
                                                   pending[0]["id"])] == [("cancelled", "no_show")]


def test_an_appointment_missing_from_a_later_file_is_left_alone_and_the_dry_run_lists_it(cli, tmp_path, db,
                                                                                         day_one, snapshot):
    gone = _session(db, "APT-20003")
    later = [r for r in day_one if r["session_id"] != "APT-20003"]
    path = write_export(tmp_path, later, "tuesday.csv")
    before = snapshot()
    dry = ok(cli("import", path, "--dry-run")).out
    listed = [line for line in dry.splitlines() if "not in this file" in line]
    assert len(listed) == 1 and f"session {gone['id']} " in listed[0] and "(session_id 'APT-20003')" in listed[0]
    assert snapshot() == before
    r = ok(cli("import", path))
    assert "note: 1 booked session of these patients between the file's first and last session is not in it and " \
           "was left as booked; --dry-run lists them" in r.out
    assert snapshot() == before  # nothing else changed either


def test_dry_run_of_a_later_file_shows_per_patient_what_moves_and_what_is_cancelled(cli, tmp_path, db, day_one,
                                                                                    snapshot):
    moved, cancelled = _row(day_one, "APT-20002"), _row(day_one, "APT-20008")
    moved["session_at"] = moved["session_at"][:10] + " 16:30"
    cancelled["status"] = "cancelled"
    before = snapshot()
    out = ok(cli("import", write_export(tmp_path, day_one, "tuesday.csv"), "--dry-run")).out.splitlines()
    assert snapshot() == before
    a, b = _session(db, "APT-20002")["id"], _session(db, "APT-20008")["id"]
    patient_lines = [line for line in out if ": patient " in line or "update patient" in line]
    assert len(patient_lines) == 3 and all("unchanged" in line for line in patient_lines)
    move = next(line for line in out if f"move session {a} " in line)
    assert " 16:30 M" in move.split(" to ")[1]
    assert any(f"cancel session {b} " in line and line.endswith("(cancelled)") for line in out)
    assert out[-1] == ("dry run, nothing written: would import 0 patients added, 2 updated, 1 unchanged; "
                       "0 enrollments; sessions: 0 booked, 1 moved, 1 cancelled, 0 otherwise changed")


def test_a_session_booked_by_hand_takes_the_appointment_id_of_the_same_time(cli, csv_file, db):
    ok(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--external-id", "MRN-1"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    header = "external_id,first_name,last_name,campaign,session_id,session_at"
    r = ok(cli("import", csv_file("MRN-1,Ada,Moss,ketamine-iv,A-7,2027-03-08 10:00", header=header)))
    assert "sessions: 0 booked, 0 moved, 0 cancelled, 1 otherwise changed" in r.out
    assert [(s["id"], s["external_id"]) for s in db("SELECT id, external_id FROM treatment_session")] == [(1, "A-7")]


# --- a good file, column by column --------------------------------------------------------------------

def test_bom_and_crlf_file_imports_patients_sessions_consent_and_plans(cli, csv_file, db):
    path = csv_file(ADA, "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,",
                    "MRN-2,Bo,Li,+1 780 555 0199,,America/Toronto,Y,,ketamine-iv,2027-03-09 09:00,",
                    bom=True, crlf=True)
    r = ok(cli("import", path, "--by", "front desk"))
    assert ("imported patients.csv: 2 patients added, 0 updated, 0 unchanged; 2 enrollments; sessions: 3 booked, "
            "0 moved, 0 cancelled, 0 otherwise changed; messages: ") in r.out
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


def test_quoted_commas_and_quotes_inside_values(cli, csv_file, db):
    path = csv_file('MRN-1,Ada,"Moss, Jr.",ketamine-iv,2027-03-08 10:00,"Suite 2, ""the blue door"""',
                    header="external_id,first_name,last_name,campaign,session_at,location", crlf=True)
    ok(cli("import", path))
    assert db("SELECT last_name FROM patient") == [{"last_name": "Moss, Jr."}]
    assert db("SELECT location FROM treatment_session") == [{"location": 'Suite 2, "the blue door"'}]


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


def test_locale_is_a_language_tag_written_either_way(cli, csv_file, db):
    ok(cli("import", csv_file("Ada,Moss,fr_CA", "Bo,Li,es", header="first_name,last_name,locale")))
    assert [p["locale"] for p in db("SELECT locale FROM patient ORDER BY id")] == ["fr-CA", "es"]


def test_session_at_with_and_without_offset(cli, csv_file):
    path = csv_file("MRN-1,Ada,Moss,,,America/New_York,,,ketamine-iv,2027-03-08 10:00,",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-09T10:00:00Z,",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-10T10:00:00-07:00,")
    ok(cli("import", path))
    # Shown in the patient's zone: local without an offset, the instant given with one.
    assert [s["starts_at"] for s in sessions(cli, "1")] == [
        "2027-03-08T10:00:00-05:00", "2027-03-09T05:00:00-05:00", "2027-03-10T12:00:00-05:00"]


def test_cancelled_and_completed_rows(cli, csv_file):
    path = csv_file("MRN-1,Ada,Moss,7805550123,,,yes,,ketamine-iv,2027-02-26 10:00,completed",
                    "MRN-1,,,,,,,,ketamine-iv,2027-02-27 10:00,No Show",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,Cancelled",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-12 10:00,")
    ok(cli("import", path))
    booked = sessions(cli, "1")
    assert [s["status"] for s in booked] == ["completed", "no_show", "cancelled", "scheduled"]
    cancelled = booked[2]["id"]
    timeline = js(cli("timeline", "1", "--json"))
    # A cancelled session plans nothing; the session to come gets its day-of text.
    assert not [m for m in timeline if m["session_id"] == cancelled and m["status"] == "scheduled"]
    assert {m["session_id"] for m in timeline if m["step"] == "day-of" and m["status"] == "scheduled"} == {
        booked[3]["id"]}


def test_enroll_without_a_session(cli, csv_file):
    ok(cli("import", csv_file("Ada,Moss,ketamine-iv", header="first_name,last_name,campaign")))
    assert js(cli("patient", "show", "1", "--json"))["enrollments"][0]["campaign"] == "ketamine-iv"
    assert [m["step"] for m in js(cli("timeline", "1", "--json"))] == []  # no phone, no email, no consent


# --- all or nothing --------------------------------------------------------------------------------

def test_each_kind_of_bad_row_is_named_with_line_and_column_and_nothing_is_written(cli, csv_file, snapshot):
    ok(cli("patient", "add", "--first-name", "Eve", "--last-name", "Ro", "--external-id", "MRN-0"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    header = "external_id,first_name,last_name,phone,timezone,campaign,session_id,session_at"
    ok(cli("import", csv_file("MRN-0,Eve,Ro,,,ketamine-iv,EVE-1,2027-03-08 10:00", header=header, name="eve.csv")))
    before = snapshot()
    path = csv_file(
        "MRN-1,Ada,Moss,7805550123,,ketamine-iv,A-1,2027-03-09 10:00",       # 2: fine
        "MRN-2,Bo,Li,555,,ketamine-iv,A-2,2027-03-09 10:00",                 # 3: bad phone
        "MRN-3,Cy,Ng,,Mars/Olympus,ketamine-iv,A-3,2027-03-09 10:00",        # 4: bad zone
        "MRN-4,Di,Oz,,,ketamine-xyz,A-4,2027-03-09 10:00",                   # 5: unknown campaign
        "MRN-1,Ada,Mossy,7805550123,,ketamine-iv,A-5,2027-03-10 10:00",      # 6: conflicting patient columns
        "MRN-5,Ed,Po,,,ketamine-iv,A-6,next tuesday",                        # 7: unparseable time
        "MRN-1,Ada,Moss,7805550123,,ketamine-iv,A-1,2027-03-11 10:00",       # 8: duplicate session_id
        "MRN-6,Fa,Qi,,,ketamine-iv,EVE-1,2027-03-08 10:00",                  # 9: another patient's session
        header=header)
    lines = error_lines(cli("import", path))
    assert lines[2].startswith("line 5, campaign: 'ketamine-xyz' is not a campaign in config/campaigns (known: ")
    assert "ketamine-iv" in lines[2].split("(known: ")[1]
    assert lines[:2] + lines[3:] == [
        "line 3, phone: '555' is not a valid number for CA or its +country code",
        "line 4, timezone: 'Mars/Olympus' is not an IANA time zone, e.g. America/Edmonton",
        "line 6, last_name: differs from line 2 for the same external_id 'MRN-1'",
        "line 7, session_at: 'next tuesday' is not a date and time like 2027-06-10 09:30 (local to the patient) "
        "or 2027-06-10T15:30:00Z",
        "line 8, session_id: 'A-1' is on line 2 too; an appointment id names one session",
        "line 9, session_id: 'EVE-1' is a session of another patient (patient 1)",
        "7 bad rows in patients.csv; nothing was imported"]
    assert snapshot() == before


def test_more_bad_cells_and_database_checks_are_named_too(cli, csv_file, snapshot):
    ok(cli("patient", "add", "--first-name", "Eve", "--last-name", "Ro", "--phone", "7805550111",
           "--consent", "sms", "--external-id", "MRN-0"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    before = snapshot()
    path = csv_file(
        ADA,                                                                        # 2: fine
        "MRN-4,Cy,Ng,,not-an-email,,maybe,,ketamine-iv,2027-03-09 09:00,",         # 3: email, bool
        "MRN-5,Di,Oz,,,,,,ketamine-iv,2027-03-14 02:30,",                           # 4: DST gap
        "MRN-7,Fa,Qi,,,,,,,2027-03-09 09:00,",                                      # 5: session without campaign
        "MRN-8,Gu,Ra,,,,,,ketamine-iv,2027-03-09 09:00,done",                       # 6: status
        "MRN-9,Ha,Su,,,,,,ketamine-iv,2027-03-09 09:00,completed",                  # 7: completed ahead of time
        "MRN-0,,,,,,,,ketamine-iv,2027-03-08 10:00,scheduled",                      # 8: fine (booked already)
    )
    lines = error_lines(cli("import", path))
    assert lines[0].startswith("line 3, email: 'not-an-email' is not valid: ")
    assert lines[0].endswith("; consent_sms: 'maybe' is not yes/no, true/false, y/n or 1/0")
    assert lines[1:] == [
        "line 4, session_at: '2027-03-14 02:30' does not exist in America/Edmonton (clocks skip it for daylight "
        "saving); pick a time outside the gap",
        "line 5, campaign: empty; a session (session_at) is booked in a campaign",
        "line 6, status: 'done' is not one of scheduled, completed, cancelled, no_show",
        "line 7, status: completed, but the session has not started: it starts Tue 2027-03-09 09:00 MST",
        "5 bad rows in patients.csv; nothing was imported"]
    assert snapshot() == before


@pytest.mark.parametrize("cell, reason", [
    ("Ada\x1b[31m", "first_name: contains an unprintable character (U+001B); type the name again"),
    ("Ada\u202egpj.exe", "first_name: contains an unprintable character (U+202E); type the name again"),
    ("A" * 101, "first_name: is 101 characters long; at most 100"),
])
def test_names_must_be_printable_and_at_most_100_characters(cli, csv_file, cell, reason):
    assert error_lines(cli("import", csv_file(f"{cell},Moss", header="first_name,last_name"))) == [
        f"line 2, {reason}", "1 bad row in patients.csv; nothing was imported"]
    assert js(cli("patient", "list", "--json")) == []


def test_a_bad_row_found_only_in_the_database_also_writes_nothing(cli, csv_file, snapshot):
    ok(cli("patient", "add", "--first-name", "Eve", "--last-name", "Ro", "--external-id", "MRN-0"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-02-22 10:00"))
    ok(cli("session", "complete", "1"))
    before = snapshot()
    path = csv_file(ADA, "MRN-0,,,,,,yes,,ketamine-iv,2027-02-22 10:00,scheduled")
    assert error_lines(cli("import", path)) == [
        "line 3, consent_sms: yes, but the patient has no phone to send to; status: session 1 is already "
        "completed; the file cannot make it scheduled",
        "1 bad row in patients.csv; nothing was imported"]
    assert snapshot() == before


def test_a_closed_session_does_not_move_and_a_session_of_another_campaign_is_named(cli, csv_file, snapshot):
    header = "external_id,first_name,last_name,campaign,session_id,session_at,status"
    ok(cli("import", csv_file("MRN-1,Ada,Moss,ketamine-iv,A-1,2027-03-08 10:00,cancelled", header=header)))
    before = snapshot()
    path = csv_file("MRN-1,Ada,Moss,ketamine-iv,A-1,2027-03-09 10:00,cancelled", header=header, name="next.csv")
    assert error_lines(cli("import", path))[0] == (
        "line 2, session_at: session 1 is cancelled; only a scheduled session can move to a new time")
    assert snapshot() == before


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
    ("first_name,last_name,locale", "Ada,Moss,english please", "line 2, locale: 'english please' is not a "
                                                               "language tag like en, es or fr-CA"),
    ("first_name,last_name,locale", "Ada,Moss,klingonese", "line 2, locale: 'klingonese' is not a language tag "
                                                           "like en, es or fr-CA"),
    ("first_name,last_name,campaign,session_id,session_at", "Ada,Moss,ketamine-iv,A\x07,2027-03-08 10:00",
     "line 2, session_id: contains an unprintable character; export the appointment id again"),
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
    ("first_name,last_name,e@mail", "patients.csv line 1: the heading of column 3 is not a column name; the "
                                    "columns are: "),
    ("first_name,email", "patients.csv line 1: missing column 'last_name'; every patient needs a first and last name"),
    ("first_name,last_name,session_at", "patients.csv line 1: missing column 'campaign'; sessions (session_at) are "
                                        "booked in a campaign"),
    ("first_name,last_name,campaign,session_id", "patients.csv line 1: missing column 'session_at'; a session_id "
                                                 "names a session at a time"),
    ("first_name,last_name,Phone,phone", "patients.csv line 1: column 'phone' appears more than once"),
    ("first_name,last_name,", "patients.csv line 1: column 3 has no name; the columns are: "),
])
def test_bad_header_is_one_line_naming_the_column(cli, csv_file, header, expected):
    line = one_line(cli("import", csv_file("Ada,Moss,x", header=header)))
    assert line.startswith(expected), line
    assert js(cli("patient", "list", "--json")) == []


def test_a_first_line_of_data_is_refused_without_echoing_it(cli, tmp_path):
    path = tmp_path / "no-header.csv"
    path.write_text("MRN-77,Ada,Moss,(780) 555-0123,ada@example.org,America/Edmonton,yes,yes,ketamine-iv,"
                    "2027-03-08 10:00,\nMRN-78,Bo,Li,,,,,,,,\n")
    r = cli("import", str(path))
    line = one_line(r)
    assert line.startswith("no-header.csv line 1 is not a header: it names 0 of the columns; add a first line "
                           "that names them (the columns are: external_id, first_name, ")
    for cell in ("MRN-77", "Ada", "Moss", "555", "ada@example.org", "2027-03-08"):
        assert cell.lower() not in (r.out + r.err).lower()
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
    assert one_line(cli("import", str(tmp_path))) == f"{tmp_path} is a folder, not a CSV file"
    assert cli("import").code == 2  # a missing argument is a usage error


# --- dry run ------------------------------------------------------------------------------------

def test_dry_run_shows_what_would_be_done_and_writes_nothing(cli, csv_file, snapshot):
    ok(cli("patient", "list"))  # the database, created empty
    before = snapshot()
    path = csv_file(ADA, "MRN-1,,,,,,,,ketamine-iv,2027-02-24 10:00,completed", "MRN-2,Bo,Li,,,,,,,,")
    r = ok(cli("import", path, "--dry-run"))
    assert r.out.splitlines() == [
        "line 2: add patient Ada Moss (external_id 'MRN-1'), consent sms email",
        "line 2:   enroll in ketamine-iv",
        "line 2:     book session Mon 2027-03-08 10:00 MST (scheduled)",
        "line 3:     book session Wed 2027-02-24 10:00 MST (completed)",
        "line 4: add patient Bo Li (external_id 'MRN-2')",
        "dry run, nothing written: would import 2 patients added, 0 updated, 0 unchanged; 1 enrollments; "
        "sessions: 2 booked, 0 moved, 0 cancelled, 0 otherwise changed"]
    assert snapshot() == before


def test_dry_run_of_a_bad_file_fails_like_the_import(cli, csv_file):
    assert error_lines(cli("import", csv_file("MRN-3,Bo,Li,123,,,,,,,"), "--dry-run"))[0].startswith(
        "line 2, phone: '123' is not a valid number")


# --- importing again ----------------------------------------------------------------------------

def test_reimport_of_the_same_file_duplicates_nothing(cli, csv_file, snapshot):
    path = csv_file(ADA, "MRN-1,,,,,,,,ketamine-iv,2027-03-10 10:00,")
    ok(cli("import", path))
    before = snapshot()
    r = ok(cli("import", path))
    assert "0 patients added, 0 updated, 1 unchanged; 0 enrollments; sessions: 0 booked" in r.out
    assert r.out.rstrip().endswith("messages: no changes")
    assert snapshot() == before
    dry = ok(cli("import", path, "--dry-run")).out
    assert "line 2: patient 1 (external_id 'MRN-1'): unchanged" in dry
    assert "line 2:   in enrollment 1 (ketamine-iv)" in dry and "already booked, unchanged" in dry


def test_known_mrn_updates_the_patient_and_joins_the_enrollment(cli, csv_file, tmp_path):
    ok(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--phone", "7805550123",
           "--consent", "sms", "--external-id", "MRN-1"))
    ok(cli("enroll", "mrn:MRN-1", "--campaign", "ketamine-iv", "--session", "2027-02-22 10:00"))
    with sqlite3.connect(tmp_path / "cli.db") as c:  # a provider once said the old number cannot receive
        c.execute("UPDATE patient SET phone_invalid = 1")
    path = csv_file("MRN-1,Addie,,7805550999,,,,,ketamine-iv,2027-02-22 10:00,completed",
                    "MRN-1,,,,,,,,ketamine-iv,2027-03-15 10:00,")
    r = ok(cli("import", path))
    assert ("0 patients added, 1 updated, 0 unchanged; 0 enrollments; sessions: 1 booked, 0 moved, 0 cancelled, "
            "1 otherwise changed") in r.out
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


def test_help_lists_every_column_in_plain_words(cli):
    out = ok(cli("import", "--help")).out
    for column in EHR_COLUMNS:
        assert column in out, column
    for notation in ("TEXT", "<str>", "[default: False]"):
        assert notation not in out


def test_the_sample_in_docs_imports_and_again_changes_nothing(cli, snapshot):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "docs" / "ehr-export-sample.csv"
    r = ok(cli("import", str(sample)))
    assert ("3 patients added, 0 updated, 0 unchanged; 3 enrollments; sessions: 8 booked, 0 moved, 0 cancelled"
            in r.out)
    before = snapshot()
    assert "0 patients added, 0 updated, 3 unchanged" in ok(cli("import", str(sample))).out
    assert snapshot() == before
