"""`dripcare report [--since DATE] [--json]` (SPEC 9): counts only, over messages due or sent
since a date. Data comes from the CLI, and delivery outcomes from direct SQL updates, as
the dispatcher and the status callbacks would write them."""

from __future__ import annotations

import sqlite3

import pytest
from tests.support.clihelp import js, ok

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


def test_report_json_counts_since_thirty_days_ago(cli, clinic_day):
    d = js(cli("report", "--json"))
    assert (d["since"], d["until"]) == ("2027-01-30T08:00:00-07:00", "2027-03-01T08:00:00-07:00")
    by_key = {(m["campaign"], m["step"], m["channel"]): m for m in d["messages"]}
    assert by_key["ketamine-iv", "welcome", "sms"]["delivered"] == 1
    assert by_key["ketamine-iv", "welcome", "email"]["sent"] == 1
    assert by_key["ketamine-iv", "day-of", "sms"]["failed"] == 1
    assert by_key["ketamine-iv", "integration", "email"]["sent"] == 1
    assert ("ketamine-iv", "integration", "sms") not in by_key  # due and sent before the window
    # Steps in the campaign file's order, sms before email.
    assert [k[1:] for k in by_key][:3] == [("welcome", "sms"), ("welcome", "email"), ("prep-week", "email")]
    # Revoking email consent cancelled every email still pending.
    pending_email = [m for m in js(cli("outbox", "--json")) if m["channel"] == "email" and m["status"] == "cancelled"]
    assert d["totals"] == {"sent": 2, "delivered": 1, "undelivered": 1, "failed": 2, "expired": 0,
                           "skipped": d["totals"]["skipped"], "cancelled": len(pending_email)}
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
    assert d["messages"] == [] and d["failures"] == {}
    assert set(d["totals"].values()) == {0} and set(d["opt_outs"].values()) == {0}
    assert d["deliverability"]["sms"] == {"delivered": 0, "undelivered": 0, "failed": 0, "rate": None}


def test_text_report_has_tables_and_no_patient_data(cli, clinic_day):
    out = ok(cli("report")).out
    for heading in ("messages", "failures by reason", "opt-outs by source", "replies by kind", "deliverability"):
        assert heading in out
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
