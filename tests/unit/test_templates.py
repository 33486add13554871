"""Templates: rendering, locale fallback, SMS cleaning and segments, email, `templates check`.

Every test works on a copy of the shipped example config and messages in tmp_path.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dripcare.config.campaigns import load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.delivery.template_check import check_templates, sample_contexts
from dripcare.delivery.templates import (
    PatientFacts, SessionFacts, Templates, TemplateError, build_context, clean_sms, sms_segments)

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "dripcare" / "examples"
UTC = timezone.utc
# Wednesday 2026-06-10 10:00 in Edmonton (UTC-6 in summer).
NOW = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)


@pytest.fixture
def dirs(tmp_path):
    config, messages = tmp_path / "config", tmp_path / "messages"
    shutil.copytree(EXAMPLES / "config", config)
    shutil.copytree(EXAMPLES / "messages", messages)
    return config, messages


@pytest.fixture
def clinic(dirs):
    return load_clinic(dirs[0])


@pytest.fixture
def campaigns(dirs, clinic):
    return load_campaigns(dirs[0], clinic, dirs[1])


def run_check(dirs, clinic, campaigns):
    return check_templates(dirs[0], dirs[1], clinic, campaigns)


def patient(**changes) -> PatientFacts:
    facts = dict(first_name="Alex", preferred_name=None, locale="en", discreet=False, timezone="America/Edmonton")
    return PatientFacts(**{**facts, **changes})


def session_at(starts_at: datetime, number: int = 1, count: int = 6) -> SessionFacts:
    return SessionFacts(starts_at=starts_at, number=number, count=count, is_first=number == 1,
                        is_last=number == count, modality=None, location=None, duration_minutes=120)


def context(clinic, campaigns, session=None, **patient_changes) -> dict:
    sessions = [session] if session else []
    return build_context(patient=patient(**patient_changes), clinic=clinic, campaign=campaigns["ketamine-iv"],
                         session=session, sessions=sessions, now=NOW)


# --- the shipped set -----------------------------------------------------------------

def test_shipped_templates_pass_check_without_errors_or_warnings(dirs, clinic, campaigns):
    errors, warnings = run_check(dirs, clinic, campaigns)
    assert errors == []
    assert warnings == []


def test_every_shipped_sms_sample_stays_within_three_segments_with_the_footer(dirs, clinic, campaigns):
    templates, campaign = Templates(dirs[1], clinic), campaigns["ketamine-iv"]
    for step in campaign.steps:
        if "sms" not in step.channels:
            continue
        for locale in ("en", "es"):
            for _, ctx in sample_contexts(clinic, campaign, step, locale):
                sms = templates.render_sms(campaign.id, step.id, locale, ctx, footer=clinic.sms_footer)
                assert sms.segments <= 3 and sms.encoding == "GSM-7", (step.id, sms.text)
                assert sms.text.endswith("\n" + clinic.sms_footer)


# --- check finds what is wrong, naming the file --------------------------------------

def test_syntax_error_fails_check_naming_file_and_line(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    path.write_text("Hello {{ patient.name }}\n{% if patient.discreet %}\nsee you\n", encoding="utf-8")
    errors, _ = run_check(dirs, clinic, campaigns)
    assert any(str(path) in line and "line" in line for line in errors), errors


def test_undefined_variable_fails_check_naming_file(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "welcome.sms.j2"
    path.write_text("Hi {{ patient.frist_name }}, this is {{ clinic.sms_name }}.\n", encoding="utf-8")
    errors, _ = run_check(dirs, clinic, campaigns)
    assert any(str(path) in line and "frist_name" in line and "line 1" in line for line in errors), errors


def test_discreet_sms_naming_the_treatment_fails_check(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "integration.sms.j2"
    path.write_text("{{ clinic.sms_name }}: how was your Ketamine session?\n", encoding="utf-8")
    errors, _ = run_check(dirs, clinic, campaigns)
    assert any(str(path) in line and "'ketamine'" in line and "discreet" in line for line in errors), errors


def test_printing_an_empty_optional_value_fails_check(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    path.write_text("{{ clinic.sms_name }}: see you at {{ session.location }}.\n", encoding="utf-8")
    errors, _ = run_check(dirs, clinic, campaigns)
    assert any(str(path) in line and "None" in line and "optional values empty" in line for line in errors), errors


def test_literal_none_in_output_fails_check(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    path.write_text("{{ clinic.sms_name }}: room {{ 'Room ' ~ session.location }}.\n", encoding="utf-8")
    errors, _ = run_check(dirs, clinic, campaigns)
    assert any(str(path) in line and "literal None" in line for line in errors), errors


def test_missing_template_fails_check(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "prep-week.email.md.j2"
    path.unlink()
    errors, _ = run_check(dirs, clinic, campaigns)
    assert any(str(path) in line and "missing template" in line for line in errors), errors


def test_clinic_reply_naming_a_sensitive_term_fails_check(dirs, clinic, campaigns):
    toml = dirs[0] / "clinic.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'help_reply = "{{ clinic.sms_name }}: care', 'help_reply = "{{ clinic.name }}: care'), encoding="utf-8")
    errors, _ = run_check(dirs, load_clinic(dirs[0]), campaigns)
    assert any("clinic.toml [sms] help_reply" in line and "'ketamine'" in line for line in errors), errors


def test_long_sms_is_a_warning_not_an_error(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "follow-up-month.sms.j2"
    path.write_text("{{ clinic.sms_name }}: " + "please call us. " * 40 + "\n", encoding="utf-8")
    errors, warnings = run_check(dirs, clinic, campaigns)
    assert errors == []
    assert any(str(path) in line and "segments" in line for line in warnings), warnings


# --- rendering -----------------------------------------------------------------------

def test_locale_variant_is_used_and_missing_ones_fall_back_to_the_clinic_locale(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    starts = NOW + timedelta(hours=3)
    spanish = context(clinic, campaigns, session_at(starts), locale="es")
    assert templates.render_sms("ketamine-iv", "day-of", "es", spanish).text.startswith("Riverbend Clinic: su sesion")
    assert "hoy a las 13:00" in templates.render_sms("ketamine-iv", "day-of", "es", spanish).text
    # no Spanish prep-2days: the English base file, in English words
    fallback = templates.render_sms("ketamine-iv", "prep-2days", "es", spanish).text
    assert "your first ketamine session is today at 1:00 PM" in fallback
    assert templates.render_sms("ketamine-iv", "welcome", "es-MX", context(clinic, campaigns)).text.startswith("Hola Alex")
    assert templates.render_sms("ketamine-iv", "welcome", "fr", context(clinic, campaigns)).text.startswith("Hi Alex")


def test_discreet_branch_does_not_name_the_treatment(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    ctx = context(clinic, campaigns, session_at(NOW + timedelta(hours=3)), discreet=True)
    text = templates.render_sms("ketamine-iv", "day-of", "en", ctx).text
    assert "ketamine" not in text.lower() and text.startswith("Riverbend Clinic: see you today at 1:00 PM")


def test_footer_goes_on_its_own_line(dirs, clinic, campaigns):
    sms = Templates(dirs[1], clinic).render_sms("ketamine-iv", "welcome", "en", context(clinic, campaigns),
                                               footer="Reply STOP to opt out.")
    assert sms.text.endswith("Call +1 780 555 0100.\nReply STOP to opt out.")


def test_email_has_subject_plain_body_and_escaped_html(dirs, clinic, campaigns):
    ctx = context(clinic, campaigns, first_name="<script>alert(1)</script>")
    email = Templates(dirs[1], clinic).render_email("ketamine-iv", "welcome", "en", ctx,
                                                    unsubscribe_url="https://care.example/u/abc?x=1&y=2")
    assert email.subject == "Welcome to Riverbend Ketamine Clinic: your ketamine course"
    assert email.text.startswith("Hi <script>alert(1)</script>,\n\nWelcome to Riverbend Ketamine Clinic.")
    assert "A typical course is 6 sessions" in email.text  # no sessions booked yet
    assert "https://care.example/u/abc?x=1&y=2" in email.text
    assert "<script>" not in email.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<h2>What your course looks like</h2>" in email.html
    assert 'href="https://care.example/u/abc?x=1&amp;y=2"' in email.html
    assert "100 River Rd, Edmonton AB" in email.html


def test_email_without_unsubscribe_url_has_no_link(dirs, clinic, campaigns):
    email = Templates(dirs[1], clinic).render_email("ketamine-iv", "welcome", "en", context(clinic, campaigns))
    assert "Unsubscribe" not in email.html and "Unsubscribe" not in email.text


def test_undefined_variable_raises_template_error_with_file_and_line(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    with pytest.raises(TemplateError, match="undefined|nope"):
        templates.render_text("{{ clinic.sms_name }} {{ nope }}", {})
    path = dirs[1] / "ketamine-iv" / "welcome.email.md.j2"
    path.write_text("{% block subject %}Hi{% endblock %}\n{% block body %}\nHello\n{{ patient.nickname }}\n{% endblock %}\n")
    with pytest.raises(TemplateError) as raised:
        templates.render_email("ketamine-iv", "welcome", "en", context(clinic, campaigns))
    message = str(raised.value)
    assert str(path) in message and "line 4" in message and "nickname" in message and "\n" not in message


def test_session_step_rendered_without_a_session_is_a_template_error(dirs, clinic, campaigns):
    with pytest.raises(TemplateError, match="day-of.sms.j2"):
        Templates(dirs[1], clinic).render_sms("ketamine-iv", "day-of", "en", context(clinic, campaigns))


def test_sandbox_refuses_unsafe_attributes(dirs, clinic):
    with pytest.raises(TemplateError):
        Templates(dirs[1], clinic).render_text("{{ clinic.__class__.__mro__ }}", {})


def test_render_text_for_clinic_replies(dirs, clinic):
    text = Templates(dirs[1], clinic).render_text(clinic.help_reply, {})
    assert text == ("Riverbend Clinic: care messages. Call +1 780 555 0100. Msg&data rates may apply. "
                    "Reply STOP to opt out.")


def test_a_fixed_template_is_picked_up_without_a_restart(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    path = dirs[1] / "ketamine-iv" / "welcome.sms.j2"
    path.write_text("Helo {{ patient.name }}\n")
    assert templates.render_sms("ketamine-iv", "welcome", "en", context(clinic, campaigns)).text == "Helo Alex"
    path.write_text("Hello {{ patient.name }}\n")
    os.utime(path, (path.stat().st_mtime + 5,) * 2)  # mtime resolution on some filesystems
    assert templates.render_sms("ketamine-iv", "welcome", "en", context(clinic, campaigns)).text == "Hello Alex"


# --- dates and times in the patient's words ------------------------------------------

@pytest.mark.parametrize(("starts", "expected"), [
    (datetime(2026, 6, 10, 21, 30, tzinfo=UTC), "today at 3:30 PM"),
    (datetime(2026, 6, 11, 5, 59, tzinfo=UTC), "today at 11:59 PM"),  # next day in UTC, today locally
    (datetime(2026, 6, 11, 15, 30, tzinfo=UTC), "tomorrow at 9:30 AM"),
    (datetime(2026, 6, 12, 15, 30, tzinfo=UTC), "on Friday at 9:30 AM"),
    (datetime(2026, 6, 16, 18, 0, tzinfo=UTC), "on Tuesday at 12:00 PM"),
    (datetime(2026, 6, 19, 15, 30, tzinfo=UTC), "on Friday, June 19 at 9:30 AM"),
    (datetime(2026, 6, 9, 15, 30, tzinfo=UTC), "yesterday at 9:30 AM"),
    (datetime(2027, 1, 8, 16, 30, tzinfo=UTC), "on Friday, January 8, 2027 at 9:30 AM"),
])
def test_when_is_relative_to_now_in_the_patients_zone(dirs, clinic, campaigns, starts, expected):
    ctx = context(clinic, campaigns, session_at(starts))
    assert Templates(dirs[1], clinic).render_text("{{ session.starts_at | when }}", ctx) == expected


def test_date_time_and_relative_day_filters(dirs, clinic, campaigns):
    ctx = context(clinic, campaigns, session_at(datetime(2026, 6, 12, 15, 30, tzinfo=UTC)))
    render = Templates(dirs[1], clinic).render_text
    assert render("{{ session.starts_at | date }}", ctx) == "Friday, June 12"
    assert render("{{ session.starts_at | time }}", ctx) == "9:30 AM"
    assert render("{{ session.starts_at | relative_day }}", ctx) == "on Friday"
    assert render("{{ now | relative_day }}", ctx) == "today"


def test_context_puts_times_in_the_patients_zone(clinic, campaigns):
    ctx = context(clinic, campaigns, session_at(datetime(2026, 6, 12, 15, 30, tzinfo=UTC)), preferred_name="Sam")
    assert ctx["session"]["starts_at"].isoformat() == "2026-06-12T09:30:00-06:00"
    assert ctx["now"].isoformat() == "2026-06-10T10:00:00-06:00"
    assert ctx["patient"]["name"] == "Sam" and ctx["campaign"] == {"id": "ketamine-iv", "name": "IV ketamine course"}
    with pytest.raises(ValueError):
        build_context(patient=patient(), clinic=clinic, campaign=campaigns["ketamine-iv"], session=None,
                      sessions=[], now=datetime(2026, 6, 10, 10, 0))


# --- SMS cleaning and segments -------------------------------------------------------

def test_clean_sms_replaces_characters_with_a_gsm_twin_and_folds_whitespace():
    raw = "\u201cHi\u201d  Sam\u2019s\u00a0visit \u2014 9:30\u2013ish\u2026\n\n\tBring water.\u200b"
    assert clean_sms(raw) == "\"Hi\" Sam's visit - 9:30-ish... Bring water."
    assert clean_sms("sesión miércoles, mañana à 9h") == "sesion miércoles, mañana à 9h"
    assert sms_segments(clean_sms(raw))[1] == "GSM-7"


@pytest.mark.parametrize(("text", "expected"), [
    ("a" * 160, (1, "GSM-7")),
    ("a" * 161, (2, "GSM-7")),
    ("a" * 306, (2, "GSM-7")),
    ("a" * 307, (3, "GSM-7")),
    ("€" * 80, (1, "GSM-7")),  # extension characters count 2
    ("€" * 81, (2, "GSM-7")),
    ("\U0001F600" * 35, (1, "UCS-2")),  # 70 UTF-16 code units
    ("\U0001F600" * 35 + "a", (2, "UCS-2")),  # 71
    ("é" * 69 + "\u2603", (1, "UCS-2")),
    ("a" * 134 + "\u2603", (3, "UCS-2")),  # 135 units: 67 + 67 + 1
    ("", (0, "GSM-7")),
])
def test_sms_segments(text, expected):
    assert sms_segments(text) == expected


# --- CLI -----------------------------------------------------------------------------

@pytest.fixture
def cli(dirs, monkeypatch):
    from dripcare.cli.common import settings
    from dripcare.cli.templates import app

    monkeypatch.setenv("DRIPCARE_CONFIG_DIR", str(dirs[0]))
    monkeypatch.setenv("DRIPCARE_MESSAGES_DIR", str(dirs[1]))
    settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    settings.cache_clear()


def test_cli_check_passes_on_the_shipped_set(cli):
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert "templates OK: 0 errors" in result.output


def test_cli_check_fails_on_a_broken_copy(cli, dirs):
    path = dirs[1] / "ketamine-iv" / "integration.sms.j2"
    path.write_text("{{ clinic.sms_name }}: {% for %}\n", encoding="utf-8")
    result = cli("check")
    assert result.exit_code == 1
    assert any(line.startswith("error: ") and str(path) in line for line in result.output.splitlines()), result.output
    assert "templates check failed: 1 error" in result.output


def test_cli_preview_shows_the_discreet_spanish_sms(cli):
    result = cli("preview", "--campaign", "ketamine-iv", "--step", "day-of", "--locale", "es", "--discreet")
    assert result.exit_code == 0, result.output
    assert "le esperamos" in result.output and "ketamina" not in result.output


def test_cli_preview_shows_an_email(cli):
    result = cli("preview", "--campaign", "ketamine-iv", "--step", "prep-week", "--channel", "email")
    assert result.exit_code == 0, result.output
    assert "Subject: Preparing for your first ketamine session" in result.output


@pytest.mark.parametrize("args", [
    ("--campaign", "nope", "--step", "welcome"),
    ("--campaign", "ketamine-iv", "--step", "nope"),
    ("--campaign", "ketamine-iv", "--step", "day-of", "--channel", "fax"),
    ("--campaign", "ketamine-iv", "--step", "day-of", "--channel", "email"),
])
def test_cli_preview_bad_values_exit_1(cli, args):
    assert cli("preview", *args).exit_code == 1
