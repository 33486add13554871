"""Templates: rendering, locale fallback, SMS cleaning and segments, email, `templates check`,
and the shipped library held to its promises (SPEC 4, issue 10): every rendering within
the segment limit, discreet renderings free of every sensitive term, the crisis line in
every integration message, the clinic's own values instead of hard-coded ones.

Tests that edit files work on a copy of the shipped example config and messages in tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dripcare.config.campaigns import load_campaign, load_campaigns
from dripcare.config.clinic import load_clinic
from dripcare.config.terms import load_sensitive_terms
from dripcare.delivery.template_check import MODALITIES, check_templates, sample_contexts
from dripcare.delivery.templates import (
    PatientFacts, SessionFacts, Templates, TemplateError, build_context, clean_sms, sms_segments)

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "dripcare" / "examples"
UTC = timezone.utc
# Wednesday 2026-06-10 10:00 in Edmonton (UTC-6 in summer).
NOW = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
CAMPAIGNS = ("ketamine-iv", "esketamine-intranasal", "ketamine-at-home")
LOCALES = ("en", "es")


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


def run_check(dirs, clinic=None, campaign="ketamine-iv"):
    """`templates check` on the copy; one campaign is enough to find a broken file in it."""
    clinic = clinic or load_clinic(dirs[0])
    chosen = {campaign: load_campaign(dirs[0] / "campaigns" / f"{campaign}.toml", clinic, dirs[1])}
    return check_templates(dirs[0], dirs[1], clinic, chosen)


def patient(**changes) -> PatientFacts:
    facts = dict(first_name="Alex", preferred_name=None, locale="en", discreet=False, timezone="America/Edmonton")
    return PatientFacts(**{**facts, **changes})


def session_at(starts_at: datetime, number: int = 1, count: int = 6, modality=None, location=None) -> SessionFacts:
    return SessionFacts(starts_at=starts_at, number=number, count=count, is_first=number == 1,
                        is_last=number == count, modality=modality, location=location, duration_minutes=120)


def context(clinic, campaigns, session=None, campaign="ketamine-iv", **patient_changes) -> dict:
    sessions = [session] if session else []
    return build_context(patient=patient(**patient_changes), clinic=clinic, campaign=campaigns[campaign],
                         session=session, sessions=sessions, now=NOW)


# --- the shipped library ------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    """The example clinic as `dripcare init` writes it (read, never written)."""
    clinic = load_clinic(EXAMPLES / "config")
    campaigns = load_campaigns(EXAMPLES / "config", clinic, EXAMPLES / "messages")
    return clinic, campaigns, Templates(EXAMPLES / "messages", clinic)


def every_sample(shipped, channel: str):
    """(campaign, step, locale, label, context) of every sample `templates check` renders."""
    clinic, campaigns, _ = shipped
    for campaign in campaigns.values():
        for step in campaign.steps:
            if channel in step.channels:
                for locale in LOCALES:
                    for label, ctx in sample_contexts(clinic, campaign, step, locale):
                        yield campaign, step, locale, label, ctx


def test_three_pathways_ship_with_a_template_in_each_language_for_every_step_and_channel(shipped):
    _, campaigns, _ = shipped
    assert set(campaigns) == set(CAMPAIGNS)
    for campaign in campaigns.values():
        for step in campaign.steps:
            for channel in step.channels:
                suffix = {"sms": ".sms{}.j2", "email": ".email{}.md.j2"}[channel]
                for locale in ("", ".es"):
                    path = EXAMPLES / "messages" / campaign.id / f"{step.id}{suffix.format(locale)}"
                    assert path.is_file(), path


def test_shipped_templates_pass_check_without_errors_or_warnings(shipped):
    clinic, campaigns, _ = shipped
    errors, warnings = check_templates(EXAMPLES / "config", EXAMPLES / "messages", clinic, campaigns)
    assert errors == []
    assert warnings == []


def test_every_sms_rendering_fits_the_segment_limit_in_gsm7_with_the_footer(shipped):
    clinic, _, templates = shipped
    rendered = 0
    for campaign, step, locale, label, ctx in every_sample(shipped, "sms"):
        footer = clinic.sms_text("footer", locale)
        sms = templates.render_sms(campaign.id, step.id, locale, ctx, footer=footer)
        assert sms.segments <= clinic.max_segments and sms.encoding == "GSM-7", (campaign.id, step.id, label, sms)
        assert sms.text.endswith("\n" + footer)
        rendered += 1
    assert rendered > 900


@pytest.mark.parametrize("campaign_id", ["ketamine-iv", "esketamine-intranasal"])
def test_what_to_expect_by_sms_says_blood_pressure_may_rise_in_both_languages(shipped, campaign_id):
    """Issue 10: an SMS-only patient learns before the first session that blood pressure is
    watched. Spanish stays GSM-7, so it says "signos vitales" (the email names la presión)."""
    clinic, campaigns, templates = shipped
    campaign = campaigns[campaign_id]
    said = {}
    for locale in ("en", "es"):
        _, ctx = sample_contexts(clinic, campaign, campaign.step("what-to-expect"), locale, discreet=(False,),
                                 filled=(True,))[0]
        said[locale] = templates.render_sms(campaign_id, "what-to-expect", locale, ctx).text
    assert "blood pressure" in said["en"], said["en"]
    assert "signos vitales" in said["es"], said["es"]


def test_spanish_keeps_its_accents(shipped):
    _, campaigns, templates = shipped
    campaign = campaigns["ketamine-iv"]
    _, ctx = sample_contexts(shipped[0], campaign, campaign.step("day-of"), "es", discreet=(False,), filled=(True,),
                             modalities=("iv",))[0]
    text = templates.render_sms("ketamine-iv", "day-of", "es", ctx).text
    assert "mañana" in text or "después" in text
    assert "despues" not in text and "manana" not in text
    email = templates.render_email("ketamine-iv", "what-to-expect", "es", ctx)
    assert "presión arterial" in email.text and "sesión" in email.subject


def test_every_discreet_rendering_is_free_of_every_sensitive_term(shipped):
    terms = load_sensitive_terms(EXAMPLES / "config")
    _, _, templates = shipped
    checked = 0
    for campaign, step, locale, label, ctx in every_sample(shipped, "sms"):
        if ctx["patient"]["discreet"]:
            footer = shipped[0].sms_text("footer", locale)
            text = templates.render_sms(campaign.id, step.id, locale, ctx, footer=footer).text
            assert terms.found(text) == [], (campaign.id, step.id, locale, label, text)
            checked += 1
    for campaign, step, locale, label, ctx in every_sample(shipped, "email"):
        if ctx["patient"]["discreet"]:
            subject, body = templates.email_text(campaign.id, step.id, locale, ctx)
            for part in (subject, body[:200]):  # what an inbox or a lock screen shows
                assert terms.found(part) == [], (campaign.id, step.id, locale, label, part)
            checked += 1
    for locale in LOCALES:
        email = templates.render_email("ketamine-iv", "welcome", locale, next(
            ctx for _, _, _, _, ctx in every_sample(shipped, "email") if ctx["patient"]["discreet"]))
        header = email.html[:email.html.index("<td style=\"padding:24px 32px;")]
        assert terms.found(header) == [] and shipped[0].sms_name in header
    assert checked > 500


def test_every_integration_message_carries_the_crisis_line_and_the_emergency_number(shipped):
    clinic, _, templates = shipped
    checked = 0
    for channel in ("sms", "email"):
        for campaign, step, locale, label, ctx in every_sample(shipped, channel):
            if step.id not in ("integration", "course-complete", "follow-up-month"):
                continue
            if channel == "sms":
                text = templates.render_sms(campaign.id, step.id, locale, ctx).text
            else:
                text = templates.render_email(campaign.id, step.id, locale, ctx).text
            crisis = clinic.instructions["crisis_line_es"] if locale == "es" else clinic.crisis_line
            assert crisis in text and clinic.emergency_number in text, (campaign.id, step.id, locale, label)
            checked += 1
    assert checked > 100


CTIA = {"en": ("msg&data rates may apply", "frequency", "help", "stop"),  # rates, frequency, HELP, STOP
        "es": ("tarifas de mensajes y datos", "frecuencia", "ayuda", "alto")}


def test_the_opt_in_confirmations_name_the_program_frequency_rates_help_and_stop(shipped):
    clinic, campaigns, templates = shipped
    for campaign in campaigns.values():  # the first SMS of an enrollment, with its footer
        for locale in LOCALES:
            for _, ctx in sample_contexts(clinic, campaign, campaign.step("welcome"), locale):
                sms = templates.render_sms(campaign.id, "welcome", locale, ctx, footer=clinic.sms_text("footer", locale))
                named = clinic.sms_name in sms.text or clinic.name in sms.text
                assert named and all(w in sms.text.lower() for w in CTIA[locale]), sms.text
    for locale in LOCALES:  # the replies to START and HELP
        for key in ("opt_in_reply", "help_reply"):
            reply = templates.render_text(clinic.sms_text(key, locale), {})
            assert reply.startswith(clinic.sms_name) and all(w in reply.lower() for w in CTIA[locale]), reply


def test_iv_and_im_wording_differ(shipped):
    clinic, campaigns, templates = shipped
    campaign = campaigns["ketamine-iv"]
    for step_id, channel in (("what-to-expect", "sms"), ("what-to-expect", "email"), ("prep-week", "email"),
                             ("welcome", "email")):
        for locale in LOCALES:
            texts = {}
            for modality in ("iv", "im", None):
                label, ctx = sample_contexts(clinic, campaign, campaign.step(step_id), locale, discreet=(False,),
                                             filled=(True,), modalities=(modality,))[0]
                render = templates.render_sms if channel == "sms" else templates.render_email
                texts[modality] = render(campaign.id, step_id, locale, ctx).text
            assert texts["iv"] != texts["im"], (step_id, channel, locale)
            assert texts[None] == texts["iv"], (step_id, channel, locale)  # IV unless IM is recorded
    iv, im = (templates.render_sms("ketamine-iv", "what-to-expect", "en", sample_contexts(
        clinic, campaign, campaign.step("what-to-expect"), "en", discreet=(False,), filled=(True,),
        modalities=(m,))[0][1]).text for m in ("iv", "im"))
    assert "infusion" in iv and "injection" not in iv
    assert "injection" in im and "infusion" not in im


# A fasting rule as the templates give it ("Fasting: no food for 4 hours before", "deje de comer a las 5:30").
FASTING = re.compile(r"fasting:|ayuno:|ayuno de|no food|nothing to eat|no coma|deje de comer", re.IGNORECASE)


def _renderings(clinic, campaigns, templates):
    for campaign in campaigns.values():
        for step in campaign.steps:
            for channel in step.channels:
                for locale in LOCALES:
                    for label, ctx in sample_contexts(clinic, campaign, step, locale, modalities=("iv",)):
                        if channel == "sms":
                            text = templates.render_sms(campaign.id, step.id, locale, ctx).text
                        else:
                            text = "\n".join(templates.email_text(campaign.id, step.id, locale, ctx))
                        yield (campaign.id, step.id, channel, locale, label), text


def test_changing_fasting_hours_in_clinic_toml_changes_every_message_that_gives_a_fasting_rule(dirs, clinic):
    before = dict(_renderings(clinic, load_campaigns(dirs[0], clinic, dirs[1]), Templates(dirs[1], clinic)))
    toml = dirs[0] / "clinic.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("fasting_hours = 4 ", "fasting_hours = 7 "),
                    encoding="utf-8")
    changed = load_clinic(dirs[0])
    assert changed.instructions["fasting_hours"] == 7
    after = dict(_renderings(changed, load_campaigns(dirs[0], changed, dirs[1]), Templates(dirs[1], changed)))
    fasting = [key for key, text in before.items() if FASTING.search(text)]
    assert {key[0] for key in fasting} == set(CAMPAIGNS) and len(fasting) > 100
    for key in fasting:
        assert after[key] != before[key], key
        assert re.search(r"\b(7 hours|7 horas|2:30 AM|a las 2:30)\b", after[key]), key  # 9:30 session - 7 h
    assert not [key for key, text in after.items() if re.search(r"\b4 (hours|horas)\b", text)]


# --- check finds what is wrong, naming the file --------------------------------------

def test_syntax_error_fails_check_naming_file_and_line(dirs):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    path.write_text("Hello {{ patient.name }}\n{% if patient.discreet %}\nsee you\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any(str(path) in line and "line" in line for line in errors), errors


def test_undefined_variable_fails_check_naming_file(dirs):
    path = dirs[1] / "ketamine-iv" / "welcome.sms.j2"
    path.write_text("Hi {{ patient.frist_name }}, this is {{ clinic.sms_name }}.\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any(str(path) in line and "frist_name" in line and "line 1" in line for line in errors), errors


def test_a_clinic_value_the_clinic_file_lacks_fails_check_naming_the_template_and_the_key(dirs):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    # In a branch no sample reaches, and in one every sample reaches.
    path.write_text("{% if false %}{{ clinic.instructions.valet_parking }}{% endif %}\n"
                    "{{ clinic.sms_name }}: {{ clinic.instructions['shuttle'] }}\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    for key, line in (("valet_parking", 1), ("shuttle", 2)):
        found = [e for e in errors if f"clinic.instructions.{key} is not in clinic.toml [instructions]" in e]
        assert len(found) == 1 and str(path) in found[0] and f"line {line}" in found[0], errors


def test_removing_a_clinic_value_fails_check_for_every_template_that_uses_it(dirs):
    toml = dirs[0] / "clinic.toml"
    toml.write_text(re.sub(r"(?m)^clear_fluids_hours = .*\n", "", toml.read_text(encoding="utf-8")),
                    encoding="utf-8")
    errors, _ = run_check(dirs)
    users = {p for p in (dirs[1] / "ketamine-iv").glob("*.j2") if "clear_fluids_hours" in p.read_text()}
    named = {p for p in users if any(str(p) in e and "clear_fluids_hours" in e for e in errors)}
    assert users and named == users, errors


def test_discreet_sms_naming_the_treatment_in_any_form_fails_check(dirs):
    path = dirs[1] / "ketamine-iv" / "integration.sms.es.j2"
    path.write_text("{{ clinic.sms_name }}: ¿qué tal sus Infusiones de KETAMÍNA?\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    for term in ("'infusión'", "'ketamina'"):
        assert any(str(path) in line and term in line and "discreet SMS" in line for line in errors), errors


def test_discreet_email_naming_the_treatment_in_its_subject_or_first_lines_fails_check(dirs):
    path = dirs[1] / "ketamine-iv" / "course-complete.email.md.j2"
    path.write_text("{% block subject %}Your ketamine course{% endblock %}\n"
                    "{% block body %}Hi {{ patient.name }}, your psychiatric care team here.\n\n"
                    + "Plenty of neutral words here. " * 10 + "Then ketamine, further down.{% endblock %}\n",
                    encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any(str(path) in e and "discreet email subject names 'ketamine'" in e for e in errors), errors
    assert any(str(path) in e and "first 200 characters names 'psychiatr*'" in e for e in errors), errors
    assert not any("first 200 characters names 'ketamine'" in e for e in errors), errors


def test_a_layout_that_shows_the_full_clinic_name_to_discreet_patients_fails_check(dirs):
    layout = dirs[1] / "_layouts" / "email.html.j2"
    layout.write_text(layout.read_text(encoding="utf-8").replace(
        "{% set shown_name = clinic.sms_name if discreet else clinic.name %}", "{% set shown_name = clinic.name %}"),
        encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any("email.html.j2" in e and "discreet email layout" in e and "'ketamine'" in e for e in errors), errors


def test_printing_an_empty_optional_value_fails_check(dirs):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    path.write_text("{{ clinic.sms_name }}: see you at {{ session.location }}.\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any(str(path) in line and "None" in line and "optional values empty" in line for line in errors), errors


def test_literal_none_in_output_fails_check(dirs):
    path = dirs[1] / "ketamine-iv" / "day-of.sms.j2"
    path.write_text("{{ clinic.sms_name }}: room {{ 'Room ' ~ session.location }}.\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any(str(path) in line and "literal None" in line for line in errors), errors


def test_missing_template_fails_check(dirs, clinic):
    path = dirs[1] / "ketamine-iv" / "prep-week.email.md.j2"
    path.unlink()
    campaign = load_campaigns(EXAMPLES / "config", clinic, EXAMPLES / "messages")["ketamine-iv"]
    errors, _ = check_templates(dirs[0], dirs[1], clinic, {"ketamine-iv": campaign})
    assert any(str(path) in line and "missing template" in line for line in errors), errors


def test_clinic_reply_naming_a_sensitive_term_fails_check_in_its_locale(dirs):
    toml = dirs[0] / "clinic.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace('help_reply = "{{ clinic.sms_name }} care', 'help_reply = "{{ clinic.name }} care')
    text = text.replace('opt_out_reply = "{{ clinic.sms_name }}: ya no', 'opt_out_reply = "Terapia psiquiátrica: ya no')
    toml.write_text(text, encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any("clinic.toml [sms] help_reply" in line and "'ketamine'" in line for line in errors), errors
    assert any("clinic.toml [sms.es] opt_out_reply" in line and "'psiquiatr*'" in line for line in errors), errors


def test_an_sms_over_the_segment_limit_is_an_error(dirs):
    path = dirs[1] / "ketamine-iv" / "follow-up-month.sms.j2"
    path.write_text("{{ clinic.sms_name }}: " + "please call us. " * 25 + "\n", encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any(str(path) in line and "SMS segments (GSM-7) with the footer" in line
               and "max_segments = 3" in line for line in errors), errors


def test_a_long_clinic_reply_is_an_error_and_the_limit_is_the_clinics(dirs):
    toml = dirs[0] / "clinic.toml"
    text = toml.read_text(encoding="utf-8").replace("max_segments = 3 ", "max_segments = 1 ")
    toml.write_text(text, encoding="utf-8")
    errors, _ = run_check(dirs)
    assert any("[sms] help_reply" in e and "max_segments = 1" in e for e in errors), errors
    assert any("welcome.sms.j2" in e and "max_segments = 1" in e for e in errors), errors


def test_an_emoji_is_a_warning_letters_are_not(dirs):
    emoji = dirs[1] / "ketamine-iv" / "follow-up-month.sms.j2"
    emoji.write_text("{{ clinic.sms_name }}: hi {{ patient.name }} \U0001F60A call {{ clinic.phone }}\n", encoding="utf-8")
    accented = dirs[1] / "ketamine-iv" / "follow-up-month.sms.es.j2"
    accented.write_text("{{ clinic.sms_name }}: hola {{ patient.name }}, ¿cómo está? Llame al {{ clinic.phone }}\n",
                        encoding="utf-8")
    errors, warnings = run_check(dirs)
    assert errors == []
    assert any(str(emoji) in w and "U+1F60A" in w and "UCS-2" in w for w in warnings), warnings
    assert not any(str(accented) in w for w in warnings), warnings


# --- rendering -----------------------------------------------------------------------

def test_locale_variant_is_used_and_missing_ones_fall_back_to_the_clinic_locale(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    starts = NOW + timedelta(hours=3)
    spanish = context(clinic, campaigns, session_at(starts), locale="es")
    text = templates.render_sms("ketamine-iv", "day-of", "es", spanish).text
    assert text.startswith("Riverbend Clinic: su cita de ketamina 1 de 6 es hoy a las 13:00.")
    assert "Ayuno: deje de comer a las 9:00 y de tomar bebidas claras a las 11:00." in text
    assert "después" in text  # accents kept
    (dirs[1] / "ketamine-iv" / "prep-2days.sms.es.j2").unlink()  # no Spanish file: the English one
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
    assert email.text.endswith("--\nUnsubscribe: https://care.example/u/abc?x=1&y=2")
    assert "<script>" not in email.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<h2>Your course</h2>" in email.html
    assert 'href="https://care.example/u/abc?x=1&amp;y=2"' in email.html
    assert "100 River Rd, Edmonton AB" in email.html


def test_a_discreet_email_shows_the_neutral_name_in_the_layout(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    email = templates.render_email("ketamine-iv", "welcome", "en", context(clinic, campaigns, discreet=True))
    assert email.subject == "Welcome to Riverbend Clinic" and "Riverbend Ketamine Clinic" not in email.html
    plain = templates.render_email("ketamine-iv", "welcome", "en", context(clinic, campaigns))
    assert "Riverbend Ketamine Clinic" in plain.html


def test_a_spanish_email_has_a_spanish_layout_and_unsubscribe_line(dirs, clinic, campaigns):
    email = Templates(dirs[1], clinic).render_email("ketamine-iv", "welcome", "es",
                                                    context(clinic, campaigns, locale="es"),
                                                    unsubscribe_url="https://care.example/u/abc")
    assert email.text.startswith("Hola, Alex:") and email.text.endswith("--\nDarse de baja: https://care.example/u/abc")
    assert '<html lang="es">' in email.html and "Darse de baja de estos correos" in email.html
    assert clinic.instructions["crisis_line_es"] in email.html and "If you are in danger" not in email.html


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


def test_a_missing_clinic_value_at_send_time_names_the_key(dirs, clinic, campaigns):
    path = dirs[1] / "ketamine-iv" / "welcome.sms.j2"
    path.write_text("Hi {{ patient.name }}, park at {{ clinic.instructions.garage }}.\n", encoding="utf-8")
    with pytest.raises(TemplateError) as raised:
        Templates(dirs[1], clinic).render_sms("ketamine-iv", "welcome", "en", context(clinic, campaigns))
    assert str(raised.value) == (f"{path}: line 1: clinic.instructions.garage is not in clinic.toml "
                                 "[instructions]; add garage there")


def test_session_step_rendered_without_a_session_is_a_template_error(dirs, clinic, campaigns):
    with pytest.raises(TemplateError, match="day-of.sms.j2"):
        Templates(dirs[1], clinic).render_sms("ketamine-iv", "day-of", "en", context(clinic, campaigns))


def test_sandbox_refuses_unsafe_attributes(dirs, clinic):
    with pytest.raises(TemplateError):
        Templates(dirs[1], clinic).render_text("{{ clinic.__class__.__mro__ }}", {})


def test_render_text_for_clinic_replies(dirs, clinic):
    templates = Templates(dirs[1], clinic)
    assert templates.render_text(clinic.help_reply, {}) == (
        "Riverbend Clinic care reminders, a few texts around each visit (msg frequency varies). Help: call "
        "+1 780 555 0100. Msg&data rates may apply. Reply STOP to opt out. In a crisis, call or text 988, or 911.")
    crisis = templates.render_text(clinic.sms_text("crisis_reply", "es"), {})
    assert crisis.startswith("Si está en peligro ahora, llame al 911.") and "llamar al 988 a cualquier hora" in crisis


def test_a_fixed_template_is_picked_up_without_a_restart(dirs, clinic, campaigns):
    templates = Templates(dirs[1], clinic)
    path = dirs[1] / "ketamine-iv" / "welcome.sms.j2"
    path.write_text("Helo {{ patient.name }}\n")
    assert templates.render_sms("ketamine-iv", "welcome", "en", context(clinic, campaigns)).text == "Helo Alex"
    path.write_text("Hello {{ patient.name }}\n")
    os.utime(path, (path.stat().st_mtime + 5,) * 2)  # mtime resolution on some filesystems
    assert templates.render_sms("ketamine-iv", "welcome", "en", context(clinic, campaigns)).text == "Hello Alex"


# --- dates, times and numbers in the patient's words ---------------------------------

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


@pytest.mark.parametrize(("starts", "english", "spanish"), [
    (datetime(2026, 6, 11, 15, 30, tzinfo=UTC), "tomorrow at 9:30 AM", "mañana a las 9:30"),
    (datetime(2026, 6, 13, 7, 15, tzinfo=UTC), "on June 13 at 1:15 AM", "el 13 de junio a la 1:15"),  # a Saturday
    (datetime(2027, 1, 9, 16, 30, tzinfo=UTC), "on January 9, 2027 at 9:30 AM", "el 9 de enero de 2027 a las 9:30"),
])
def test_when_without_the_weekday(dirs, clinic, campaigns, starts, english, spanish):
    template = "{{ session.starts_at | when(weekday=false) }}"
    (dirs[1] / "ketamine-iv" / "x.sms.es.j2").write_text(template, encoding="utf-8")
    templates = Templates(dirs[1], clinic)
    assert templates.render_text(template, context(clinic, campaigns, session_at(starts))) == english
    rendered = templates.env.get_template("ketamine-iv/x.sms.es.j2").render(context(clinic, campaigns, session_at(starts)))
    assert rendered == spanish and "sábado" not in rendered


def test_date_time_and_relative_day_filters(dirs, clinic, campaigns):
    ctx = context(clinic, campaigns, session_at(datetime(2026, 6, 12, 15, 30, tzinfo=UTC)))
    render = Templates(dirs[1], clinic).render_text
    assert render("{{ session.starts_at | date }}", ctx) == "Friday, June 12"
    assert render("{{ session.starts_at | date(weekday=false) }}", ctx) == "June 12"
    assert render("{{ session.starts_at | time }}", ctx) == "9:30 AM"
    assert render("{{ session.starts_at | relative_day }}", ctx) == "on Friday"
    assert render("{{ now | relative_day }}", ctx) == "today"
    assert render("{{ session.starts_at | at_time }}", ctx) == "at 9:30 AM"


def test_hours_minutes_and_hours_before_filters(dirs, clinic, campaigns):
    # 2027-03-14 is the spring-forward in Edmonton: 8 hours before 09:30 MDT is 00:30 MST.
    ctx = context(clinic, campaigns, session_at(datetime(2027, 3, 14, 15, 30, tzinfo=UTC)))
    render = Templates(dirs[1], clinic).render_text
    assert render("{{ 4 | hours }}, {{ 1 | hours }}, {{ 1.5 | hours }}, {{ 15 | minutes }}", ctx) == \
        "4 hours, 1 hour, 1.5 hours, 15 minutes"
    assert render("{{ session.starts_at | hours_before(2) | time }}", ctx) == "7:30 AM"
    assert render("{{ session.starts_at | hours_before(8) | time }}", ctx) == "12:30 AM"  # elapsed, not wall, hours
    with pytest.raises(TemplateError, match="number"):
        render("{{ 'four' | hours }}", ctx)
    (dirs[1] / "ketamine-iv" / "y.sms.es.j2").write_text("{{ 4 | hours }}, {{ 1 | hours }}")
    spanish = Templates(dirs[1], clinic).env.get_template("ketamine-iv/y.sms.es.j2").render(ctx)
    assert spanish == "4 horas, 1 hora"


def test_context_puts_times_in_the_patients_zone(clinic, campaigns):
    ctx = context(clinic, campaigns, session_at(datetime(2026, 6, 12, 15, 30, tzinfo=UTC)), preferred_name="Sam")
    assert ctx["session"]["starts_at"].isoformat() == "2026-06-12T09:30:00-06:00"
    assert ctx["now"].isoformat() == "2026-06-10T10:00:00-06:00"
    assert ctx["patient"]["name"] == "Sam"
    assert ctx["campaign"] == {"id": "ketamine-iv", "name": "In-clinic ketamine course (IV or IM)"}
    assert ctx["clinic"]["instructions"]["fasting_hours"] == 4
    with pytest.raises(ValueError):
        build_context(patient=patient(), clinic=clinic, campaign=campaigns["ketamine-iv"], session=None,
                      sessions=[], now=datetime(2026, 6, 10, 10, 0))


# --- SMS cleaning and segments -------------------------------------------------------

def test_clean_sms_replaces_punctuation_with_a_gsm_twin_and_folds_whitespace():
    raw = "\u201cHi\u201d  Sam\u2019s\u00a0visit \u2014 9:30\u2013ish\u2026\n\n\tBring water.\u200b"
    assert clean_sms(raw) == "\"Hi\" Sam's visit - 9:30-ish... Bring water."
    assert sms_segments(clean_sms(raw))[1] == "GSM-7"
    assert clean_sms("«Sí», dijo\u202f: ‹ok›") == "\"Sí\", dijo : 'ok'"


def test_clean_sms_keeps_the_letters_of_a_language():
    text = "sesión miércoles, mañana à 9h; Zoë, François, Łukasz, Ægir, ¿qué?"
    assert clean_sms(text) == text
    assert sms_segments(clean_sms("sesión"))[1] == "UCS-2" and sms_segments(clean_sms("después"))[1] == "GSM-7"


def test_clean_sms_drops_control_and_direction_override_characters():
    assert clean_sms("Ana\x1b[31m\x07 \u202eanaiD\u202c Diaz\x00!") == "Ana [31m anaiD Diaz !"


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
    ("á" * 201, (3, "UCS-2")),
    ("", (0, "GSM-7")),
])
def test_sms_segments(text, expected):
    assert sms_segments(text) == expected


# --- CLI: the real `dripcare` entry point on a copy of the example clinic -------------

def test_cli_check_passes_on_the_shipped_library(cli):
    result = cli("templates", "check")
    assert result.code == 0, result.err + result.out
    assert "templates OK: 0 errors, 0 warnings (3 campaigns)" in result.out


def test_cli_check_fails_on_a_broken_copy_with_one_line_per_problem(cli, clinic_dir):
    path = clinic_dir / "messages" / "ketamine-iv" / "integration.sms.j2"
    path.write_text("{{ clinic.sms_name }}: {% for %}\n", encoding="utf-8")
    result = cli("templates", "check")
    assert result.code == 1
    assert any(line.startswith("error: ") and str(path) in line for line in result.out.splitlines()), result.out
    assert "templates check failed: 1 error" in result.out


def test_cli_preview_shows_the_discreet_spanish_sms(cli, clinic_dir):
    result = cli("templates", "preview", "--campaign", "ketamine-iv", "--step", "day-of", "--locale", "es",
                 "--discreet")
    assert result.code == 0, result.err
    text = result.out.splitlines()[1]  # under the title rule: the SMS itself
    assert text.startswith("Riverbend Clinic: le esperamos") and "ketamina" not in text.lower()
    assert load_sensitive_terms(clinic_dir / "config").found(text) == []


def test_cli_preview_follows_the_modality(cli):
    im = cli("templates", "preview", "--campaign", "ketamine-iv", "--step", "what-to-expect", "--channel", "sms",
             "--modality", "im")
    iv = cli("templates", "preview", "--campaign", "ketamine-iv", "--step", "what-to-expect", "--channel", "sms")
    assert im.code == iv.code == 0
    assert "injection" in im.out and "IV infusion" in iv.out
    # The vocabulary enroll and import take, in any case; anything else one line, exit 1.
    upper = cli("templates", "preview", "--campaign", "ketamine-iv", "--step", "what-to-expect", "--channel", "sms",
                "--modality", "IM")
    assert upper.code == 0 and upper.out == im.out
    bogus = cli("templates", "preview", "--campaign", "ketamine-iv", "--step", "what-to-expect", "--modality", "iv drip")
    assert bogus.code == 1 and bogus.out == ""
    assert bogus.err.strip().splitlines() == ["error: --modality 'iv drip' is not one of iv, im, intranasal, "
                                              "sublingual, oral"]


def test_cli_preview_shows_an_email(cli):
    result = cli("templates", "preview", "--campaign", "ketamine-iv", "--step", "prep-week", "--channel", "email")
    assert result.code == 0, result.err
    assert "Subject: Preparing for your first ketamine session" in result.out


@pytest.mark.parametrize("args", [
    ("--campaign", "nope", "--step", "welcome"),
    ("--campaign", "ketamine-iv", "--step", "nope"),
    ("--campaign", "ketamine-iv", "--step", "day-of", "--channel", "fax"),
    ("--campaign", "ketamine-iv", "--step", "day-of", "--channel", "email"),
    ("--campaign", "ketamine-iv", "--step", "day-of", "--modality", "pill"),
])
def test_cli_preview_bad_values_exit_1_with_one_line(cli, args):
    result = cli("templates", "preview", *args)
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err


def test_cli_help_is_plain_words(cli):
    for args in (("templates", "--help"), ("templates", "check", "--help"), ("templates", "preview", "--help")):
        result = cli(*args)
        assert result.code == 0
        assert not re.search(r"<\w+>|\bTEXT\b|\bBOOLEAN\b|\{\w+\}", result.out), result.out
    assert all(m in cli("templates", "preview", "--help").out for m in MODALITIES)
