"""Consent has one writer (issue 9): staff at the CLI, a daily import and a patient's SMS
reply all go through it, so on each path the same grant twice leaves one row and a
re-grant owes the footer again (SPEC 3.2: the next SMS carries it)."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from dripcare.config.settings import Settings
from dripcare.web import create_app
from tests.support.clihelp import ok

PHONE = "+17805550123"
PUBLIC = "https://care.example.org"
TOKEN = "test-auth-token"


def sms_consents(db) -> list[tuple[int, str]]:
    return [(r["granted"], r["source"]) for r in db("SELECT granted, source FROM consent WHERE channel = 'sms' "
                                                    "ORDER BY id")]


def footer_since(db) -> str:
    return db("SELECT footer_since FROM enrollment")[0]["footer_since"]


def enrolled(cli) -> None:
    ok(cli("patient", "add", "--first-name", "Ana", "--last-name", "Diaz", "--phone", PHONE, "--consent", "sms",
           "--external-id", "MRN-1"))
    ok(cli("enroll", "1", "--campaign", "ketamine-iv", "--session", "2027-03-20 10:00"))


def by_cli(cli, tmp_path, granted: bool, now: str) -> None:
    ok(cli("consent", "grant" if granted else "revoke", "1", "--channel", "sms", env={"DRIPCARE_NOW": now}))


def by_import(cli, tmp_path, granted: bool, now: str) -> None:
    path = tmp_path / f"export-{granted}.csv"
    path.write_text(f"external_id,first_name,last_name,phone,consent_sms\nMRN-1,Ana,Diaz,{PHONE},"
                    f"{'yes' if granted else 'no'}\n")
    ok(cli("import", str(path), env={"DRIPCARE_NOW": now}))


def by_sms(cli, tmp_path, granted: bool, now: str) -> None:
    settings = Settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "DRIPCARE_PUBLIC_BASE_URL": PUBLIC,
                         "TWILIO_AUTH_TOKEN": TOKEN, "DRIPCARE_CONFIG_DIR": str(tmp_path / "clinic/config"),
                         "DRIPCARE_MESSAGES_DIR": str(tmp_path / "clinic/messages"), "DRIPCARE_NOW": now})
    form = {"From": PHONE, "To": "+17805550100", "Body": "START" if granted else "STOP",
            "MessageSid": f"SM{next(form_counter):032d}"}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/inbound", form)
    answer = create_app(settings).test_client().post("/twilio/inbound", data=form,
                                                      headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200


form_counter = iter(range(10_000))


@pytest.mark.parametrize("path", [by_cli, by_import, by_sms], ids=["cli", "import", "sms"])
def test_each_path_writes_a_grant_once_and_a_regrant_owes_the_footer(cli, db, tmp_path, path):
    enrolled(cli)
    path(cli, tmp_path, True, "2027-03-01T16:00:00Z")  # already in force: nothing written
    assert len(sms_consents(db)) == 1
    before = footer_since(db)
    path(cli, tmp_path, False, "2027-03-01T17:00:00Z")
    path(cli, tmp_path, False, "2027-03-01T17:30:00Z")  # already withdrawn: nothing written
    assert [granted for granted, _ in sms_consents(db)] == [1, 0]
    path(cli, tmp_path, True, "2027-03-01T18:00:00Z")
    assert [granted for granted, _ in sms_consents(db)] == [1, 0, 1]
    assert footer_since(db) > before  # the next SMS carries the footer again
