"""`dripcare report [--since DATE] [--campaign ID] [--json] [--html FILE]` (SPEC 9): counts
only, over messages due or sent since a date. First a whole course on a virtual clock
through the real dispatcher, with the providers' answers, status callbacks, a STOP and a
staff revocation known in advance, and the report checked against them; then the CLI, on
outcomes written as the dispatcher and the status callbacks would write them."""

from __future__ import annotations

import sqlite3
import tomllib
from collections import Counter
from datetime import datetime, timezone

import pytest
from tests.support.clihelp import js, ok
from tests.support.dispatching import ScriptedTransport, TransportError, enroll_sample, fast_forward, make_dispatcher, rows

from dripcare.app import inbox, patients
from dripcare.app.callbacks import status_callback
from dripcare.app.notices import ClinicNotices
from dripcare.app.report import build_report


class ByRecipient(ScriptedTransport):
    """Answers scripted per recipient, so the outcome of each patient's messages is known
    whatever order the dispatcher sends them in."""

    def __init__(self, channel: str, answers: dict[str, list]):
        super().__init__(channel)
        self.by_recipient = {to: list(a) for to, a in answers.items()}

    def send(self, out):
        self.answers = [self.by_recipient.get(out.to, []).pop(0)] if self.by_recipient.get(out.to) else []
        return super().send(out)


def _row(rt, **where):
    return rows(rt.engine, **where)[0]


def test_report_of_a_course_run_on_a_virtual_clock_matches_its_known_outcomes(rt, tmp_path):
    ana, _ = enroll_sample(rt)  # New York: SMS and email
    bo, _ = enroll_sample(rt, timezone="America/Edmonton", phone="+1 780 555 0123", email=None)
    cy, _ = enroll_sample(rt, timezone="America/Vancouver", phone=None, email="cy@example.org")
    sms = ByRecipient("sms", {})
    email = ByRecipient("email", {"ana@example.org": [None, TransportError("permanent", "smtp:550")]})
    dispatcher = make_dispatcher(rt, tmp_path, transports={"sms": sms, "email": email})
    # The first day: the welcomes go out; Bo answers STOP, then HELP and a word of thanks.
    fast_forward(dispatcher, rt.clock, until=datetime(2027, 3, 2, 15, 0, tzinfo=timezone.utc))
    notices = ClinicNotices(rt)
    for body in ("STOP", "HELP", "thanks, see you tuesday"):
        inbox.receive(rt, notices, "+17805550123", body, sid=None)
    patients.set_consent(rt, str(cy.id), "email", False, source="staff", by="front desk", evidence="asked by phone")
    fast_forward(dispatcher, rt.clock)
    dispatcher.close()
    # Twilio's callbacks for three of Ana's texts.
    welcome = _row(rt, patient_id=ana.id, step_id="welcome", channel="sms")
    expect = _row(rt, patient_id=ana.id, step_id="what-to-expect", channel="sms")
    day_of = _row(rt, patient_id=ana.id, step_id="day-of", channel="sms")
    status_callback(rt, str(welcome.id), welcome.provider_id, "delivered", None)
    status_callback(rt, str(expect.id), expect.provider_id, "delivered", None)
    status_callback(rt, str(day_of.id), day_of.provider_id, "undelivered", "30003")

    d = build_report(rt, since="2027-03-01")
    everything = rows(rt.engine)
    # Every message of the course is counted once, in the column of its state.
    by_state = Counter("planned" if m.status in ("scheduled", "sending", "unconfirmed") else m.status
                       for m in everything)
    assert {k: v for k, v in d["totals"].items() if v} == dict(by_state)
    assert sum(d["totals"].values()) == len(everything)
    assert (d["totals"]["delivered"], d["totals"]["undelivered"], d["totals"]["failed"]) == (2, 1, 1)
    assert d["totals"]["planned"] == 0  # the course is over
    by_key = {(m["step"], m["channel"]): m for m in d["messages"]}
    assert (by_key["welcome", "sms"]["delivered"], by_key["welcome", "sms"]["sent"]) == (1, 1)  # Ana's, Bo's
    assert by_key["welcome", "email"]["sent"] == 2  # Ana's and Cy's
    assert by_key["prep-week", "email"]["failed"] == 1  # Ana's second email: the mailbox refused it
    assert by_key["day-of", "sms"]["undelivered"] == 1
    # After the refusal, Ana's other emails were cancelled (contact invalid), Bo's texts (STOP)
    # and Cy's emails (staff) too.
    reasons = Counter((m.patient_id, m.reason) for m in everything if m.status == "cancelled")
    assert set(reasons) == {(ana.id, "contact_invalid"), (bo.id, "opted_out"), (cy.id, "opted_out")}
    assert d["totals"]["cancelled"] == sum(reasons.values())
    assert d["failures"] == {"smtp:550": 1, "twilio:30003": 1}
    assert d["deliverability"]["sms"] == {"delivered": 2, "undelivered": 1, "failed": 0, "rate": 0.6667}
    assert d["deliverability"]["email"]["rate"] is None  # no delivery reports for email
    assert d["opt_outs"] == {"staff": 1, "import": 0, "sms_keyword": 1, "email_unsubscribe": 0, "carrier": 0}
    day = {p["start"]: p for p in d["opt_outs_over_time"]["periods"]}
    assert d["opt_outs_over_time"]["unit"] == "day"
    assert (day["2027-03-02"]["sms_keyword"], day["2027-03-02"]["staff"]) == (1, 1)
    assert sum(p["sms_keyword"] + p["staff"] for p in day.values()) == 2
    assert d["replies"] == {"opt_out": 1, "opt_in": 0, "help": 1, "crisis": 0, "reply": 1}


def test_report_of_one_campaign_counts_its_patients_only(rt, tmp_path):
    enroll_sample(rt)
    assert {m["campaign"] for m in build_report(rt, campaign="ketamine-iv")["messages"]} == {"ketamine-iv"}
    with pytest.raises(Exception, match="--campaign 'nope' is not a campaign"):
        build_report(rt, campaign="nope")

NOW = "2027-03-01 15:00:00.000000"  # the cli fixture's DRIPCARE_NOW, as SQLite stores it


@pytest.fixture
def sql(tmp_path):
    def run(statement: str, *params):
        with sqlite3.connect(tmp_path / "cli.db") as connection:
            return connection.execute(statement, params).fetchall()
    return run


@pytest.fixture
def clinic_day(cli, sql):
    """One patient, two sessions, and a day of delivery outcomes."""
    ok(cli("patient", "add", "--first-name", "Ada", "--last-name", "Moss", "--phone", "7805550123",
           "--email", "ada@example.org", "--consent", "sms", "--consent", "email"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv",
           "--session", "2027-03-08 10:00", "--session", "2027-03-10 10:00"))
    rows = {(m["step"], m["channel"], m["session_id"]): m["id"] for m in js(cli("timeline", "1", "--json"))}

    def outcome(key, status, reason=None, sent_at=NOW, due_at=None):
        sql("UPDATE message SET status = ?, reason = ?, sent_at = ?, ever_claimed = 1, attempts = 1, "
            "due_at = COALESCE(?, due_at) WHERE id = ?", status, reason, sent_at, due_at, rows[key])

    outcome(("welcome", "sms", None), "delivered")
    outcome(("welcome", "email", None), "sent")
    outcome(("day-of", "sms", 1), "failed", "twilio:21211")
    outcome(("what-to-expect", "sms", 1), "undelivered", "twilio:30003")
    outcome(("what-to-expect", "email", 1), "failed", "smtp:550")
    # Long before the default window: due and sent in December, only in the report from then.
    outcome(("integration", "sms", 1), "delivered", sent_at="2026-12-01 17:00:00.000000",
            due_at="2026-12-01 17:00:00.000000")
    # Due in December but sent (late, after retries) in February: inside 30 days by sent_at.
    outcome(("integration", "email", 1), "sent", sent_at="2027-02-15 17:00:00.000000",
            due_at="2026-12-01 17:00:00.000000")
    ok(cli("consent", "revoke", "1", "--channel", "email", "--source", "email_unsubscribe"))
    december = "2026-12-01 17:00:00.000000"
    for taken_as, received in (("opt_out", NOW), ("reply", NOW), ("reply", NOW), ("help", december)):
        sql("INSERT INTO inbound_message (patient_id, from_number, body, received_at, taken_as, urgent) "
            "VALUES (1, '+17805550123', 'private words', ?, ?, 0)", received, taken_as)
    return rows


def test_report_json_counts_since_thirty_days_ago(cli, clinic_day, clinic_dir):
    d = js(cli("report", "--json"))
    assert (d["since"], d["until"]) == ("2027-01-30T08:00:00-07:00", "2027-03-01T08:00:00-07:00")
    by_key = {(m["campaign"], m["step"], m["channel"]): m for m in d["messages"]}
    assert by_key["ketamine-iv", "welcome", "sms"]["delivered"] == 1
    assert by_key["ketamine-iv", "welcome", "email"]["sent"] == 1
    assert by_key["ketamine-iv", "day-of", "sms"]["failed"] == 1
    assert by_key["ketamine-iv", "integration", "email"]["sent"] == 1
    # Due and delivered in December: before the window (the session's other one is still planned).
    assert by_key["ketamine-iv", "integration", "sms"]["delivered"] == 0
    # Steps in the campaign file's order, sms before email.
    steps = [s["id"] for s in tomllib.loads((clinic_dir / "config/campaigns/ketamine-iv.toml").read_text())["steps"]]
    listed = [(steps.index(step), ("sms", "email").index(channel)) for _, step, channel in by_key]
    assert listed == sorted(listed) and list(by_key)[:2] == [("ketamine-iv", "welcome", "sms"),
                                                             ("ketamine-iv", "welcome", "email")]
    # Revoking email consent cancelled every email still pending.
    pending_email = [m for m in js(cli("outbox", "--json")) if m["channel"] == "email" and m["status"] == "cancelled"]
    assert d["totals"] == {"planned": d["totals"]["planned"], "sent": 2, "delivered": 1, "undelivered": 1,
                           "failed": 2, "expired": 0, "skipped": d["totals"]["skipped"],
                           "cancelled": len(pending_email)}
    assert d["totals"]["planned"] == len([m for m in js(cli("outbox", "--json")) if m["status"] == "scheduled"])
    assert len(pending_email) > 0
    assert d["failures"] == {"smtp:550": 1, "twilio:21211": 1, "twilio:30003": 1}
    assert d["opt_outs"] == {"staff": 0, "import": 0, "sms_keyword": 0, "email_unsubscribe": 1, "carrier": 0}
    assert d["replies"] == {"opt_out": 1, "opt_in": 0, "help": 0, "crisis": 0, "reply": 2}
    # SMS has callbacks (delivered, undelivered): 1 of 3; email has none, so no rate.
    assert d["deliverability"] == {"sms": {"delivered": 1, "undelivered": 1, "failed": 1, "rate": 0.3333},
                                   "email": {"delivered": 0, "undelivered": 0, "failed": 1, "rate": None}}


def test_since_date_is_midnight_in_the_clinic_zone(cli, clinic_day):
    d = js(cli("report", "--since", "2027-03-01", "--json"))
    assert d["since"] == "2027-03-01T00:00:00-07:00"
    assert d["totals"]["sent"] == 1  # the February send is before it
    old = js(cli("report", "--since", "2026-11-01", "--json"))
    assert old["totals"]["sent"] == 2 and old["totals"]["delivered"] == 2
    assert old["replies"]["help"] == 1


def test_empty_report(cli):
    d = js(cli("report", "--json"))
    assert d["messages"] == [] and d["failures"] == {} and d["campaign"] is None
    assert set(d["totals"].values()) == {0} and set(d["opt_outs"].values()) == {0}
    assert d["deliverability"]["sms"] == {"delivered": 0, "undelivered": 0, "failed": 0, "rate": None}


def test_text_report_has_tables_and_no_patient_data(cli, clinic_day):
    out = ok(cli("report")).out
    for heading in ("messages of ketamine-iv going out", "messages of ketamine-iv not sent", "failures by reason",
                    "opt-outs by source", "replies by kind", "deliverability"):
        assert heading in out
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)
    assert "twilio:21211" in out and "33.3%" in out
    for phi in ("Ada", "Moss", "555", "ada@example.org", "private words"):
        assert phi not in out


@pytest.mark.parametrize("since, reason", [
    ("2027-3-1", "is not a date like 2027-03-01 (YYYY-MM-DD)"),
    ("03/01/2027", "is not a date like 2027-03-01 (YYYY-MM-DD)"),
    ("2027-02-30", "is not a date like 2027-03-01 (YYYY-MM-DD)"),
    ("last week", "is not a date like 2027-03-01 (YYYY-MM-DD)"),
    ("2027-03-02", "is in the future (today is 2027-03-01)"),
])
def test_bad_since_is_one_line(cli, since, reason):
    r = cli("report", "--since", since, "--json")
    assert r.code == 1 and r.out == ""
    assert r.err.strip().splitlines() == [f"error: --since {since!r} {reason}"]


def test_report_of_one_campaign_and_an_unknown_one(cli, clinic_day):
    d = js(cli("report", "--campaign", "ketamine-iv", "--json"))
    assert d["campaign"] == "ketamine-iv" and d["totals"]["delivered"] == 1
    assert d["opt_outs"]["email_unsubscribe"] == 1 and d["replies"]["reply"] == 2
    r = cli("report", "--campaign", "nope")
    assert r.code == 1 and r.out == ""
    assert r.err.strip().splitlines() == [
        "error: --campaign 'nope' is not a campaign in config/campaigns and has no enrollments (known: "
        + r.err.split("(known: ")[1].strip()]


def test_html_report_is_one_page_of_counts_with_no_patient_data(cli, clinic_day, tmp_path):
    target = tmp_path / "report.html"
    r = ok(cli("report", "--html", str(target)))
    assert f"wrote {target}" in r.out
    html = target.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") >= 4
    assert "default-src 'none'" in html
    for label in ("Messages by step and channel", "Delivery rate", "Opt-outs by source over time",
                  "Replies by kind", "welcome", "twilio:21211", "33.3%", "email_unsubscribe"):
        assert label in html, label
    for phi in ("Ada", "Moss", "555", "ada@example.org", "private words"):
        assert phi not in html
    # --json and --html together: the document on stdout, the page on disk, nothing else printed.
    again = ok(cli("report", "--json", "--html", str(tmp_path / "again.html")))
    assert js(again)["totals"] == js(cli("report", "--json"))["totals"]
    assert (tmp_path / "again.html").read_text().count("<svg") >= 4


def test_html_report_to_a_place_that_cannot_be_written_is_one_line(cli, tmp_path):
    r = cli("report", "--html", str(tmp_path / "missing" / "report.html"))
    assert r.code == 1
    assert r.err.strip().splitlines() == [f"error: cannot write --html {tmp_path / 'missing' / 'report.html'}: "
                                          "No such file or directory"]
    assert cli("report", "--html", str(tmp_path)).err.startswith(f"error: --html {tmp_path} is a folder")
