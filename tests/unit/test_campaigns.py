"""Campaign files (SPEC 3.3): the shipped example loads; every wrong file is refused with the
file, the step and the offending value, by the loader and by every command that loads it."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from dripcare.config.campaigns import load_campaign, load_campaigns
from dripcare.config.clinic import ConfigError, load_clinic
from dripcare.domain.timing import Offset


def write_campaign(clinic_dir: Path, campaign_id: str, body: str, templates: dict[str, list[str]] | None = None,
                   file_name: str | None = None) -> Path:
    path = clinic_dir / "config" / "campaigns" / f"{file_name or campaign_id}.toml"
    path.write_text(body, encoding="utf-8")
    messages = clinic_dir / "messages" / campaign_id
    messages.mkdir(parents=True, exist_ok=True)
    for step_id, channels in (templates or {}).items():
        for channel in channels:
            suffix = ".sms.j2" if channel == "sms" else ".email.md.j2"
            (messages / f"{step_id}{suffix}").write_text("hello\n" if channel == "sms" else
                                                         "{% block subject %}Hi{% endblock %}{% block body %}Hi{% endblock %}\n")
    return path


def campaign_text(campaign_id="trial", steps: list[dict] | None = None, header: str = "") -> str:
    steps = steps if steps is not None else [{"id": "hello", "anchor": "enrollment", "offset": "0m"}]
    parts = [f'id = "{campaign_id}"\nname = "Trial"\nchannels = ["sms"]\n{header}']
    for s in steps:
        parts.append("[[steps]]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') if not isinstance(v, (int, list))
                                             else f"{k} = {_toml(v)}\n" for k, v in s.items()))
    return "\n".join(parts)


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)


def load(clinic_dir: Path, path: Path):
    clinic = load_clinic(clinic_dir / "config")
    return load_campaign(path, clinic, clinic_dir / "messages")


def test_example_campaign_loads(clinic_dir):
    clinic = load_clinic(clinic_dir / "config")
    campaigns = load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages")
    c = campaigns["ketamine-iv"]
    assert c.course_end == "last_booked"
    assert [s.id for s in c.steps] == ["welcome", "prep-week", "prep-2days", "what-to-expect", "day-of",
                                       "integration", "course-complete", "follow-up-month"]
    assert {s.anchor for s in c.steps} == {"enrollment", "first_session", "each_session", "last_session"}
    wte = c.step("what-to-expect")
    assert (wte.offset, wte.at, wte.channels) == (Offset(days=-1), time(17, 0), ("sms", "email"))
    assert c.step("day-of").channels == ("sms",)
    assert c.step("welcome").expires == timedelta(hours=72)
    assert c.step("prep-week").priority == 60 and c.step("course-complete").priority == 50
    assert c.step("prep-week").channels == ("sms", "email")  # preparation reaches SMS-only patients too


PATHWAYS = {
    "ketamine-iv": ["welcome", "prep-week", "prep-2days", "what-to-expect", "day-of", "integration",
                    "course-complete", "follow-up-month"],
    "esketamine-intranasal": ["welcome", "prep-week", "prep-2days", "what-to-expect", "day-of", "integration",
                              "course-complete", "follow-up-month"],
    "ketamine-at-home": ["welcome", "prep-week", "safety-check", "day-of", "integration", "course-complete",
                         "follow-up-month"],
}


@pytest.mark.parametrize("campaign_id", PATHWAYS)
def test_each_pathway_has_the_whole_arc(clinic_dir, campaign_id):
    clinic = load_clinic(clinic_dir / "config")
    c = load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages")[campaign_id]
    assert [s.id for s in c.steps] == PATHWAYS[campaign_id]
    assert c.step("welcome").anchor == "enrollment"
    assert c.step("prep-week").anchor == "first_session" and c.step("prep-week").offset == Offset(days=-7)
    assert c.step("integration").anchor == "each_session" and not c.step("integration").offset.negative
    assert c.step("follow-up-month").offset == Offset(days=30)
    for step in c.steps:  # every step reaches SMS-only and email-only patients, but day-of (SMS)
        assert step.channels == (("sms",) if step.id == "day-of" else ("sms", "email")), step.id


@pytest.mark.parametrize("campaign_id", PATHWAYS)
def test_integration_has_the_highest_priority_so_the_daily_cap_never_drops_it(clinic_dir, campaign_id):
    clinic = load_clinic(clinic_dir / "config")
    c = load_campaigns(clinic_dir / "config", clinic, clinic_dir / "messages")[campaign_id]
    others = [s.priority for s in c.steps if s.id != "integration"]
    assert c.step("integration").priority > max(others)


def test_valid_options(clinic_dir):
    steps = [{"id": "a", "anchor": "each_session", "offset": "+1d", "at": "18:00", "when": "completed",
              "expires": "12h", "priority": 70, "channels": ["sms"]},
             {"id": "b", "anchor": "last_session", "offset": "-2h30m", "expires": "session_start"}]
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=steps, header='course_end = "on_complete"\n'),
                          {"a": ["sms"], "b": ["sms"]})
    c = load(clinic_dir, path)
    assert c.course_end == "on_complete"
    a, b = c.steps
    assert (a.when, a.expires, a.priority, a.at) == ("completed", timedelta(hours=12), 70, time(18, 0))
    assert (b.expires, b.offset) == ("session_start", Offset(elapsed=-timedelta(hours=2, minutes=30)))


@pytest.mark.parametrize("field, value, quoted", [
    ("anchor", "weekly", "'weekly'"),
    ("offset", "7 days", "'7 days'"),
    ("offset", "-1w", "'-1w'"),
    ("at", "7:30", "'7:30'"),
    ("at", "25:00", "'25:00'"),
    ("at", "22:30", "'22:30'"),      # inside quiet hours 21:00-08:00
    ("at", "06:00", "'06:00'"),
    ("expires", "soon", "'soon'"),
    ("expires", "-2h", "'-2h'"),
    ("when", "always", "'always'"),
    ("channels", ["fax"], "'fax'"),
    ("priority", "high", "'high'"),
])
def test_bad_step_value_names_file_step_and_value(clinic_dir, field, value, quoted):
    step = {"id": "hello", "anchor": "each_session", "offset": "-1d", field: value}
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=[step]), {"hello": ["sms"]})
    with pytest.raises(ConfigError) as info:
        load(clinic_dir, path)
    message = str(info.value)
    assert str(path) in message and "'hello'" in message and quoted in message, message
    assert "\n" not in message


def test_at_inside_quiet_hours_says_so(clinic_dir):
    step = {"id": "late", "anchor": "each_session", "offset": "-1d", "at": "21:00"}
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=[step]), {"late": ["sms"]})
    with pytest.raises(ConfigError, match="quiet hours"):
        load(clinic_dir, path)


def test_duplicate_step_id(clinic_dir):
    steps = [{"id": "twice", "anchor": "enrollment", "offset": "0m"},
             {"id": "twice", "anchor": "each_session", "offset": "-1d"}]
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=steps), {"twice": ["sms"]})
    with pytest.raises(ConfigError) as info:
        load(clinic_dir, path)
    assert str(path) in str(info.value) and "duplicate" in str(info.value) and "'twice'" in str(info.value)


def test_missing_template(clinic_dir):
    steps = [{"id": "hello", "anchor": "enrollment", "offset": "0m", "channels": ["sms", "email"]}]
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=steps), {"hello": ["sms"]})
    with pytest.raises(ConfigError) as info:
        load(clinic_dir, path)
    message = str(info.value)
    assert str(path) in message and "'hello'" in message and "hello.email.md.j2" in message


def test_template_for_unused_channel_is_ignored(clinic_dir):
    steps = [{"id": "hello", "anchor": "enrollment", "offset": "0m"}]
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=steps), {"hello": ["sms", "email"]})
    assert load(clinic_dir, path).steps[0].channels == ("sms",)


def test_id_must_equal_file_name(clinic_dir):
    path = write_campaign(clinic_dir, "trial", campaign_text("other"), {"hello": ["sms"]}, file_name="trial")
    with pytest.raises(ConfigError) as info:
        load(clinic_dir, path)
    assert str(path) in str(info.value) and "'other'" in str(info.value) and "'trial'" in str(info.value)


@pytest.mark.parametrize("header, quoted", [
    ('course_end = "sometime"\n', "'sometime'"),
])
def test_bad_course_end(clinic_dir, header, quoted):
    path = write_campaign(clinic_dir, "trial", campaign_text(header=header), {"hello": ["sms"]})
    with pytest.raises(ConfigError) as info:
        load(clinic_dir, path)
    assert str(path) in str(info.value) and quoted in str(info.value)


def test_not_toml(clinic_dir):
    path = write_campaign(clinic_dir, "trial", "id = \n[[steps", {})
    with pytest.raises(ConfigError) as info:
        load(clinic_dir, path)
    assert str(path) in str(info.value)


def test_session_start_expiry_needs_a_session_anchor(clinic_dir):
    steps = [{"id": "hello", "anchor": "enrollment", "offset": "0m", "expires": "session_start"}]
    path = write_campaign(clinic_dir, "trial", campaign_text(steps=steps), {"hello": ["sms"]})
    with pytest.raises(ConfigError, match="session_start"):
        load(clinic_dir, path)


# --- through the CLI: every command that loads campaigns refuses, one line, exit 1 -----------------

def break_example(clinic_dir: Path, old: str, new: str) -> Path:
    path = clinic_dir / "config" / "campaigns" / "ketamine-iv.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, quoted", [
    ('anchor = "first_session"', 'anchor = "first_visit"', "'first_visit'"),
    ('offset = "-7d"', 'offset = "-7days"', "'-7days'"),
    ('at = "17:00"', 'at = "5pm"', "'5pm'"),
    ('at = "17:00"', 'at = "22:00"', "'22:00'"),
    ('id = "prep-2days"', 'id = "prep-week"', "'prep-week'"),
    ('id = "ketamine-iv"', 'id = "ketamine"', "'ketamine'"),
])
def test_cli_refuses_a_wrong_campaign(cli, clinic_dir, old, new, quoted):
    path = break_example(clinic_dir, old, new)
    for args in (("campaigns", "list"), ("campaigns", "show", "ketamine-iv"), ("patient", "list")):
        r = cli(*args)
        assert r.code == 1, (args, r)
        lines = r.err.strip().splitlines()
        assert len(lines) == 1, r.err
        assert str(path) in lines[0] and quoted in lines[0]


def test_cli_refuses_missing_template(cli, clinic_dir):
    (clinic_dir / "messages" / "ketamine-iv" / "integration.sms.j2").unlink()
    r = cli("campaigns", "list")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1
    assert "integration" in r.err and "integration.sms.j2" in r.err


def test_cli_campaigns_list_and_show(cli):
    r = cli("campaigns", "list")
    assert r.code == 0 and "ketamine-iv" in r.out
    r = cli("campaigns", "show", "ketamine-iv")
    assert r.code == 0 and "what-to-expect" in r.out and "17:00" in r.out
    r = cli("campaigns", "show", "nope")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1 and "'nope'" in r.err
