"""`dripcare audit PATIENT [--json]` (SPEC 9): one patient's consent changes and message events,
oldest first, for a records request. The course is played on the CLI's own database through
the real dispatcher on a virtual clock; a status callback and a STOP arrive as the web
process would hand them on; then the command is run as staff run it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.conftest import START
from tests.support.clihelp import js, ok
from tests.support.courses import cli_rt  # noqa: F401  (a fixture)
from tests.support.dispatching import ScriptedTransport, enroll_sample, fast_forward, make_dispatcher

from dripcare.app import inbox
from dripcare.app.callbacks import status_callback
from dripcare.app.notices import ClinicNotices


@pytest.fixture
def stopped_after_welcome(cli_rt, tmp_path):
    """Ana consents to texts at enrollment, gets her welcome text (delivered), then replies STOP."""
    patient, _ = enroll_sample(cli_rt)
    dispatcher = make_dispatcher(cli_rt, tmp_path, transports={"sms": ScriptedTransport("sms"),
                                                               "email": ScriptedTransport("email")})
    fast_forward(dispatcher, cli_rt.clock, until=START + timedelta(minutes=30))
    dispatcher.close()
    with cli_rt.engine.connect() as c:
        welcome, provider = c.exec_driver_sql("SELECT id, provider_id FROM message WHERE step_id = 'welcome' "
                                              "AND channel = 'sms'").one()
    status_callback(cli_rt, str(welcome), provider, "delivered", None)
    cli_rt.clock.advance_to(START + timedelta(hours=2))
    inbox.receive(cli_rt, ClinicNotices(cli_rt), "+12125550143", "STOP", sid="SM" + "1" * 32)
    return patient, welcome


def test_audit_json_lists_the_grant_every_event_of_a_sent_message_and_the_stop_in_order(cli, db,
                                                                                      stopped_after_welcome):
    patient, welcome = stopped_after_welcome
    entries = js(cli("audit", str(patient.id), "--json"))
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)  # oldest first
    assert {e["kind"] for e in entries} == {"consent", "message"}
    consents = [e for e in entries if e["kind"] == "consent"]
    assert [(c["channel"], c["change"], c["source"], c["by"]) for c in consents] == [
        ("sms", "granted", "staff", "test"), ("email", "granted", "staff", "test"),
        ("sms", "revoked", "sms_keyword", "sms")]
    assert consents[0]["evidence"] == "recorded at patient add" and consents[2]["evidence"] == "STOP"
    assert consents[0]["at"] == "2027-03-01T10:00:00-05:00"  # in the patient's zone
    # Every event of the welcome text, as the outbox wrote them, in their order.
    sent = [e for e in entries if e["kind"] == "message" and e["message_id"] == welcome]
    recorded = db("SELECT kind, status FROM message_event WHERE message_id = ? ORDER BY id", welcome)
    assert [(e["event"], e["status"]) for e in sent] == [(r["kind"], r["status"]) for r in recorded]
    assert [e["event"] for e in sent] == ["planned", "claimed", "attempt", "sent", "delivered"]
    assert sent[0]["step"] == "welcome" and sent[0]["channel"] == "sms" and sent[0]["session_id"] is None
    # The STOP: consent revoked, then the texts still to come cancelled, in that order.
    stop = entries.index(consents[2])
    assert entries.index(sent[-1]) < stop
    after = [e for e in entries[stop + 1:] if e["kind"] == "message"]
    assert after and all((e["event"], e["status"], e["reason"], e["channel"]) == (
        "cancelled", "cancelled", "opted_out", "sms") for e in after)
    # Everything of this patient is there, and nothing of anyone else's.
    events = db("SELECT COUNT(*) AS n FROM message_event e JOIN message m ON m.id = e.message_id "
                "WHERE m.patient_id = ?", patient.id)[0]["n"]
    assert len([e for e in entries if e["kind"] == "message"]) == events
    assert all("body" not in e for e in entries)  # events, not message texts


def test_audit_text_is_readable_at_80_columns(cli, stopped_after_welcome):
    patient, welcome = stopped_after_welcome
    out = ok(cli("audit", f"{patient.id}")).out.splitlines()
    assert out[0] == f"audit of Ana Diaz (patient {patient.id}), times in America/New_York"
    assert all(len(line) <= 80 for line in out), max(out, key=len)
    text = "\n".join(out)
    assert ("2027-03-01 10:00 EST consent sms granted for +12125550143 (staff, by test): recorded at patient "
            "add") in " ".join(text.split())
    assert f"message {welcome} welcome sms: planned -> scheduled" in text
    assert f"message {welcome} welcome sms: delivered, by twilio" in text
    assert "consent sms revoked for +12125550143 (sms_keyword, by sms): STOP" in " ".join(text.split())
    # Continuation lines are indented under the time, so each entry starts with its time.
    starts = [line for line in out[1:] if not line.startswith(" ")]
    assert all(line[:4] == "2027" for line in starts)


def test_audit_by_mrn_of_a_patient_with_nothing_yet_and_of_no_patient(cli):
    ok(cli("patient", "add", "--first-name", "Bo", "--last-name", "Li", "--external-id", "MRN-9"))
    assert ok(cli("audit", "mrn:MRN-9")).out.splitlines() == [
        "audit of Bo Li (patient 1), times in America/Edmonton", "nothing recorded yet"]
    assert js(cli("audit", "mrn:MRN-9", "--json")) == []
    r = cli("audit", "42")
    assert r.code == 1 and r.out == ""
    assert r.err.strip().splitlines() == ["error: no patient 42; `dripcare patient list` shows every patient and "
                                          "their id"]


def test_audit_help_says_where_the_patient_id_is_found(cli):
    words = " ".join(ok(cli("audit", "--help")).out.replace("│", " ").split())
    assert "Usage: dripcare audit [OPTIONS] PATIENT" in words
    assert "mrn:" in words and "dripcare patient list" in words
