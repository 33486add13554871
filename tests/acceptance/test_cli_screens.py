"""Screens front-desk staff read (SPEC 9), at 80 columns: the timeline with its sessions above
the messages and a reason wherever one is needed, the outbox filtered and limited (its JSON
streamed), campaigns in words, phone numbers as people write them, and the inbox after a
crisis reply that came in through the web process."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime

import pytest
from twilio.request_validator import RequestValidator

from dripcare.config.settings import Settings
from dripcare.web import create_app
from tests.support.clihelp import js, ok, one_line, said

NARROW = {"COLUMNS": "80"}
LONG_STEP = "integration-and-reflection-on-the-evening-after"
PUBLIC, TOKEN = "https://care.example.org", "test-auth-token"


@pytest.fixture
def long_campaign(clinic_dir):
    """ketamine-iv with one step given a very long id: a value that must fold, not be cut."""
    config, messages = clinic_dir / "config" / "campaigns", clinic_dir / "messages"
    text = (config / "ketamine-iv.toml").read_text().replace('id = "ketamine-iv"', 'id = "long"')
    (config / "long.toml").write_text(text.replace('id = "integration"', f'id = "{LONG_STEP}"'))
    shutil.copytree(messages / "ketamine-iv", messages / "long")
    for path in (messages / "long").glob("integration.*"):
        path.rename(path.with_name(path.name.replace("integration", LONG_STEP)))


def enrolled(cli, campaign="ketamine-iv") -> None:
    ok(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--phone", "780 555 0123",
           "--email", "ada@example.org", "--timezone", "America/Edmonton", "--consent", "sms", "--consent", "email"))
    ok(cli("enroll", "1", "--campaign", campaign, "--session", "2027-03-08 10:00", "--session", "2027-03-10 07:30",
           "--session", "2027-03-12 10:00"))


def cells(out: str, column: str) -> list[str]:
    """The values of one column of a message table, each folded value joined back together.
    Rows start with their id; a line starting with a space continues the row above; the
    table ends at the first line that is neither. The header gives the columns' starts."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if re.match(r"^id\s+(when|patient)\s", line))
    starts = [m.start() for m in re.finditer(r"\S+(?: \(\S+ \S+\))?", lines[header])]
    names = [lines[header][s:].split()[0] for s in starts]
    at = names.index(column)
    left, right = starts[at], (starts[at + 1] if at + 1 < len(starts) else None)
    values = []
    for line in lines[header + 2:]:
        if not line or not (line[0].isdigit() or line[0] == " "):
            break
        piece = line[left:right].strip()
        if line[0].isdigit():
            values.append(piece)
        else:
            values[-1] += piece
    return values


WORDS = """id = "words"
name = "In words"
channels = ["sms", "email"]

[[steps]]
id = "welcome"
anchor = "enrollment"
offset = "0m"
expires = "72h"

[[steps]]
id = "prep-week"
anchor = "first_session"
offset = "-7d"
at = "10:00"
channels = ["email"]
priority = 60

[[steps]]
id = "day-of"
anchor = "each_session"
offset = "-2h30m"
channels = ["sms"]

[[steps]]
id = "integration"
anchor = "each_session"
offset = "+1d"
at = "18:00"
when = "completed"
"""


@pytest.fixture
def words_campaign(clinic_dir):
    (clinic_dir / "config" / "campaigns" / "words.toml").write_text(WORDS)
    shutil.copytree(clinic_dir / "messages" / "ketamine-iv", clinic_dir / "messages" / "words")


def test_timeline_fits_80_columns_and_folds_long_values(cli, long_campaign):
    enrolled(cli, "long")
    out = ok(cli("timeline", "1", env=NARROW)).out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    rows = js(cli("timeline", "1", "--json"))
    steps = cells(out, "step")
    assert steps == [r["step"] for r in rows]
    assert LONG_STEP in steps and LONG_STEP not in out  # there, but folded over lines


def test_timeline_shows_the_sessions_above_the_messages(cli):
    enrolled(cli)
    out = ok(cli("timeline", "1", env=NARROW)).out
    words = " ".join(out.split())
    assert "Ada Moss, patient 1; times in America/Edmonton" in words
    assert "SMS to +1 780-555-0123: consent given" in words
    sessions = out.index("starts (patient's time)")
    assert sessions < out.index("\nid ")
    for n, when in enumerate(["Mon 8 Mar 2027 10:00 MST", "Wed 10 Mar 2027 07:30 MST", "Fri 12 Mar 2027 10:00 MST"], 1):
        assert re.search(rf"^{n}\s+{n}\s+{when}\s+scheduled", out, re.M), out


def test_every_row_that_needs_a_reason_has_one(cli):
    enrolled(cli)
    ok(cli("session", "cancel", "3"))
    out = ok(cli("timeline", "1", env=NARROW)).out
    rows = js(cli("timeline", "1", "--json"))
    reasons = cells(out, "reason")
    assert len(reasons) == len(rows)
    for row, reason in zip(rows, reasons):
        if row["status"] not in ("scheduled", "sent", "delivered"):
            assert reason and reason.startswith(row["reason"]), (row, reason)
    # the day-of SMS of the 07:30 session: 04:30 is in quiet hours, so it goes the evening before
    [day_of] = [(r, why) for r, why in zip(rows, reasons) if r["step"] == "day-of" and r["session_id"] == 2]
    assert day_of[0]["due_at"].startswith("2027-03-09T20:59") and day_of[1] == "quiet hours: was due 04:30"
    assert "quiet hours: its own time fell inside quiet hours" in " ".join(out.split())
    assert "session_cancelled: its session was cancelled" in " ".join(out.split())


def test_timeline_notes_a_channel_with_nothing_planned(cli):
    ok(cli("patient", "add", "--first-name", "Bo", "--last-name", "Li", "--phone", "780 555 0124",
           "--consent", "sms"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-08 10:00"))
    words = " ".join(ok(cli("timeline", "1", env=NARROW)).out.split())
    assert "note: no email will go out for ketamine-iv: patient 1 has no email address" in words


def test_outbox_fits_80_columns_shows_a_limit_and_says_how_many_more(cli, long_campaign):
    enrolled(cli, "long")
    everything = js(cli("outbox", "--json"))
    out = ok(cli("outbox", "--limit", "5", env=NARROW)).out
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out
    assert cells(out, "id") == [str(r["id"]) for r in everything[:5]]
    assert f"and {len(everything) - 5} more not shown ({len(everything)} in all)" in " ".join(out.split())
    assert len(cells(ok(cli("outbox", env=NARROW)).out, "id")) == len(everything)  # under the default 100


def test_outbox_filters(cli):
    enrolled(cli)
    ok(cli("patient", "add", "--first-name", "Bo", "--last-name", "Li", "--phone", "780 555 0124",
           "--consent", "sms", "--external-id", "MRN-2"))
    ok(cli("enroll", "2", "--campaign", "ketamine-iv", "--session", "2027-03-20 10:00"))
    ok(cli("session", "cancel", "3"))
    every = js(cli("outbox", "--json"))
    due = [(datetime.fromisoformat(r["due_at"]), r["id"]) for r in every]
    assert due == sorted(due)  # by due time
    assert [r["id"] for r in js(cli("outbox", "--patient", "mrn:MRN-2", "--json"))] == \
        [r["id"] for r in every if r["patient_id"] == 2]
    cancelled = js(cli("outbox", "--status", "cancelled", "--status", "skipped", "--json"))
    assert cancelled and {r["status"] for r in cancelled} <= {"cancelled", "skipped"}
    assert len(cancelled) == len([r for r in every if r["status"] in ("cancelled", "skipped")])
    window = js(cli("outbox", "--since", "2027-03-09", "--until", "2027-03-10", "--json"))
    assert window and all(r["due_at"][:10] in ("2027-03-09", "2027-03-10") for r in window)
    assert len(window) == len([r for r in every if r["due_at"][:10] in ("2027-03-09", "2027-03-10")
                               and r["patient_id"] == 1] + [r for r in every if r["patient_id"] == 2 and
                                                            r["due_at"][:10] in ("2027-03-09", "2027-03-10")])
    assert js(cli("outbox", "--campaign", "ketamine-iv", "--limit", "3", "--json")) == every[:3]
    assert "no messages" in said(cli("outbox", "--since", "2030-01-01"))


def test_outbox_json_is_one_document_written_as_it_is_read(cli):
    enrolled(cli)
    out = ok(cli("outbox", "--json")).out
    rows = json.loads(out)
    assert rows and {"id", "patient_id", "step", "channel", "status", "due_at"} <= set(rows[0])
    assert out.count("\n") == len(rows) + 2  # "[", one object per line, "]": streamed, not built whole
    assert js(cli("outbox", "--status", "failed", "--json")) == []


def test_campaigns_show_reads_in_words(cli, words_campaign):
    r = cli("campaigns", "show", "words", env=NARROW)
    assert said(r).split(" welcome: ")[1:] == [
        "at enrollment; SMS and email; expires 3 days after it is due "
        "prep-week: 7 days before the first session, at 10:00; email; expires at the session; "
        "priority 60 (higher goes first under the daily limit) "
        "day-of: 2 hours 30 minutes before each session; SMS; expires at the session "
        "integration: 1 day after each session, at 18:00; SMS and email; expires 24 hours after it is due; "
        "only after a completed session"]
    assert max(len(line) for line in r.out.splitlines()) <= 80
    assert "words" in said(cli("campaigns", "list"))


def test_patient_list_and_show_write_numbers_for_people(cli):
    enrolled(cli)
    for args in (("patient", "list"), ("patient", "show", "1")):
        out = ok(cli(*args, env=NARROW)).out
        assert "+1 780-555-0123" in out and max(len(line) for line in out.splitlines()) <= 80


# --- the inbox, after replies came in through the web process ----------------------------------------

@pytest.fixture
def texted(cli, tmp_path, clinic_dir):
    """Ada texts an ordinary reply, then a crisis; a stranger texts too: signed Twilio requests
    to the real Flask app on the same SQLite file. The clinic's notices go to files, so none
    lands in the middle of a command's output."""
    enrolled(cli)
    settings = Settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
                         "DRIPCARE_SMS_TRANSPORT": "file", "DRIPCARE_EMAIL_TRANSPORT": "file",
                         "DRIPCARE_OUTBOX_DIR": str(tmp_path / "outbox"),
                         "DRIPCARE_CONFIG_DIR": str(clinic_dir / "config"),
                         "DRIPCARE_MESSAGES_DIR": str(clinic_dir / "messages"), "DRIPCARE_NOW": "2027-03-02T17:00:00Z",
                         "DRIPCARE_PUBLIC_BASE_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN,
                         "DRIPCARE_SECRET_KEY": "a-secret-for-tests"})
    client = create_app(settings).test_client()
    for n, (sender, body) in enumerate([("+17805550123", "Thanks, see you Monday"),
                                        ("+17805550123", "I want to kill myself"),
                                        ("+12125550199", "who is this?")], 1):
        params = {"From": sender, "To": "+17805550100", "Body": body, "MessageSid": f"SM{n:032d}"}
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/inbound", params)
        assert client.post("/twilio/inbound", data=params, headers={"X-Twilio-Signature": signature}).status_code == 200
    return cli


def test_inbox_puts_the_urgent_reply_first_with_name_and_number(texted):
    out = ok(texted("inbox", env=NARROW)).out
    assert max(len(line) for line in out.splitlines()) <= 80
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert len(blocks) == 3
    assert blocks[0].startswith("URGENT reply ") and "taken as crisis" in blocks[0]
    assert "from Ada Moss (patient 1), call back on +1 780-555-0123" in blocks[0]
    assert "I want to kill myself" in blocks[0]
    assert "from +1 212-555-0199: no patient has this number" in out
    replies = js(texted("inbox", "--json"))
    assert [r["urgent"] for r in replies] == [True, False, False]
    urgent = replies[0]
    assert {"id", "patient_id", "patient_name", "from", "body", "received_at", "taken_as", "urgent",
            "handled_at", "handled_by"} <= set(urgent)
    assert (urgent["patient_id"], urgent["patient_name"], urgent["from"], urgent["taken_as"]) == \
        (1, "Ada Moss", "+17805550123", "crisis")
    assert urgent["received_at"].startswith("2027-03-02T10:00") and urgent["handled_at"] is None
    assert [r["taken_as"] for r in js(texted("inbox", "--urgent", "--json"))] == ["crisis"]


def test_inbox_handle_hides_it_and_all_shows_who_handled_it(texted):
    urgent = js(texted("inbox", "--json"))[0]
    r = texted("inbox", "handle", str(urgent["id"]), "--by", "nurse Kim", "--note", "called back, safe with family")
    assert said(r).startswith(f"reply {urgent['id']} handled by nurse Kim")
    assert urgent["id"] not in [x["id"] for x in js(texted("inbox", "--json"))]
    assert "URGENT" not in ok(texted("inbox")).out
    every = js(texted("inbox", "--all", "--json"))
    handled = next(x for x in every if x["id"] == urgent["id"])
    assert handled["handled_by"] == "nurse Kim" and handled["handled_at"] and every[-1]["id"] == urgent["id"]
    text = " ".join(ok(texted("inbox", "--all", env=NARROW)).out.split())
    assert "handled by nurse Kim" in text and "called back, safe with family" in text
    line = one_line(texted("inbox", "handle", str(urgent["id"])))
    assert "already handled by nurse Kim" in line


def test_timeline_html_writes_the_course_as_one_page(cli, tmp_path):
    enrolled(cli)
    page = tmp_path / "ada.html"
    out = said(cli("timeline", "1", "--html", str(page)))
    assert f"wrote {page}" in out
    html = page.read_text(encoding="utf-8")
    assert "<svg" in html and "Ada" in html
    line = one_line(cli("timeline", "1", "--html", str(tmp_path / "no-such-folder" / "ada.html")))
    assert "--html" in line
