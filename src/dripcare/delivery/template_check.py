"""`dripcare templates check` and `preview`: every template rendered with sample data,
SMS both discreet and not, each locale present, optional values filled and empty (SPEC 4)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import jinja2

from dripcare.domain.campaign import Campaign, Step
from dripcare.config.clinic import Clinic
from dripcare.delivery.templates import (PatientFacts, SessionFacts, TemplateError, Templates, build_context, sms_segments,
                        template_name)
from dripcare.domain.timing import apply_offset, resolve_wall, zone

# --- Sample data for `templates check` and `templates preview` ------------------------

_SAMPLE_DAYS = (0, 2, 4, 7, 9, 11)  # Mon/Wed/Fri over two weeks


def sample_sessions(clinic: Clinic, filled: bool = True) -> list[SessionFacts]:
    """A six-session course from Monday 2026-06-08 09:30 in the clinic's zone."""
    tz = zone(clinic.timezone)
    first = datetime(2026, 6, 8, 9, 30)
    return [SessionFacts(
        starts_at=resolve_wall(first + timedelta(days=day), tz), number=n, count=len(_SAMPLE_DAYS),
        is_first=n == 1, is_last=n == len(_SAMPLE_DAYS),
        modality="IV ketamine infusion" if filled else None,
        location="Room 2, 100 River Rd" if filled else None, duration_minutes=120)
        for n, day in enumerate(_SAMPLE_DAYS, 1)]


def _anchor_sessions(step: Step, sessions: list[SessionFacts]) -> list[SessionFacts | None]:
    if step.anchor == "enrollment":
        return [None]
    if step.anchor == "first_session":
        return [sessions[0]]
    if step.anchor == "last_session":
        return [sessions[-1]]
    return [sessions[0], sessions[len(sessions) // 2], sessions[-1]]


def sample_contexts(clinic: Clinic, campaign: Campaign, step: Step, locale: str, *,
                    discreet: tuple[bool, ...] = (False, True),
                    filled: tuple[bool, ...] = (True, False)) -> list[tuple[str, dict]]:
    """(label, context) for each sample: `now` is the step's due time for that session;
    "empty" samples have no preferred name, location or modality, and (enrollment
    steps) no sessions booked yet."""
    tz = zone(clinic.timezone)
    enrolled = resolve_wall(datetime(2026, 5, 25, 14, 0), tz)
    samples = []
    for full in filled:
        sessions = sample_sessions(clinic, full)
        for session in _anchor_sessions(step, sessions):
            anchor = session.starts_at if session else enrolled
            now = apply_offset(anchor, step.offset, tz, step.at)
            for hidden in discreet:
                patient = PatientFacts("Alex", "Sam" if full else None, locale, hidden, clinic.timezone)
                label = ", ".join(filter(None, [
                    "discreet" if hidden else "not discreet",
                    "optional values filled" if full else "optional values empty",
                    f"session {session.number} of {session.count}" if session else None]))
                samples.append((label, build_context(
                    patient=patient, clinic=clinic, campaign=campaign, session=session,
                    sessions=sessions if (full or session) else [], now=now)))
    return samples


# --- templates check --------------------------------------------------------------------

_NONE = re.compile(r"\bNone\b")
CLINIC_TEXTS = ("sms_footer", "help_reply", "opt_out_reply", "opt_in_reply", "unmonitored_reply")
_CLINIC_KEYS = {"sms_footer": "footer"}


def load_sensitive_terms(config_dir: Path) -> list[str]:
    path = Path(config_dir) / "sensitive_terms.txt"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def sensitive_terms_in(text: str, terms: list[str]) -> list[str]:
    """The terms named in `text`, as whole words, case ignored."""
    return [t for t in terms if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", text, re.IGNORECASE)]


class _Findings:
    """One line per problem, not per sample: the first sample that showed it is named."""

    def __init__(self):
        self.errors: dict[str, str] = {}
        self.warnings: dict[str, str] = {}

    def error(self, problem: str, sample: str | None = None) -> None:
        self.errors.setdefault(problem, f"{problem} ({sample})" if sample else problem)

    def warn(self, problem: str, sample: str | None = None) -> None:
        self.warnings.setdefault(problem, f"{problem} ({sample})" if sample else problem)


def _check_sms_text(found: _Findings, where: str, text: str, discreet: bool, terms: list[str],
                    footer: str | None, sample: str | None) -> None:
    if _NONE.search(text):
        found.error(f"{where}: renders a literal None", sample)
    if discreet:
        for term in sensitive_terms_in(text, terms):
            found.error(f"{where}: discreet SMS names {term!r}", sample)
    full = f"{text}\n{footer}" if footer else text
    segments, encoding = sms_segments(full)
    if segments > 3:
        found.warn(f"{where}: {segments} SMS segments{' with the footer' if footer else ''}, more than 3", sample)
    if encoding == "UCS-2":
        found.warn(f"{where}: UCS-2 (a character outside GSM-7), 70 characters per segment", sample)


def _locales(messages_dir: Path, campaign_id: str, step_id: str, channel: str) -> list[str]:
    folder = messages_dir / campaign_id
    if channel == "sms":
        pattern, cut = f"{step_id}.sms.*.j2", (len(f"{step_id}.sms."), -len(".j2"))
    else:
        pattern, cut = f"{step_id}.email.*.md.j2", (len(f"{step_id}.email."), -len(".md.j2"))
    return sorted(p.name[cut[0]:cut[1]] for p in folder.glob(pattern))


def _check_step(found: _Findings, templates: Templates, campaign: Campaign, step: Step,
                channel: str, terms: list[str]) -> None:
    clinic, messages_dir = templates.clinic, templates.messages_dir
    base = template_name(campaign.id, step.id, channel)
    if not (messages_dir / base).is_file():
        found.error(f"{messages_dir / base}: missing template for step {step.id!r} ({channel})")
        return
    for locale in [clinic.locale, *_locales(messages_dir, campaign.id, step.id, channel)]:
        where = str(messages_dir / (base if locale == clinic.locale else
                                    template_name(campaign.id, step.id, channel, locale)))
        for sample, context in sample_contexts(clinic, campaign, step, locale):
            try:
                if channel == "sms":
                    text = templates.render_sms(campaign.id, step.id, locale, context).text
                    footer = templates.render_text(clinic.sms_footer, context) if clinic.sms_footer else None
                    _check_sms_text(found, where, text, context["patient"]["discreet"], terms, footer, sample)
                else:
                    email = templates.render_email(campaign.id, step.id, locale, context, "https://example.org/u/x")
                    if _NONE.search(email.subject) or _NONE.search(email.text):
                        found.error(f"{where}: renders a literal None", sample)
            except TemplateError as error:
                # A syntax error or a missing file is the same for every sample: name none.
                static = isinstance(error.__cause__, jinja2.TemplateSyntaxError | jinja2.TemplateNotFound)
                found.error(str(error), None if static else sample)


def _check_strays(found: _Findings, messages_dir: Path, campaigns: dict[str, Campaign]) -> None:
    """Templates no step uses are ignored; say so, since a typo in a name lands here."""
    for folder in sorted(p for p in messages_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        campaign = campaigns.get(folder.name)
        for path in sorted(folder.glob("*.j2")):
            step_id, _, rest = path.name.partition(".")
            channel = rest.split(".")[0]
            step = campaign.step(step_id) if campaign else None
            if step is None or channel not in step.channels:
                found.warn(f"{path}: no step of campaign {folder.name!r} sends it by {channel or '?'}; ignored")


def _check_clinic_texts(found: _Findings, templates: Templates, config_dir: Path, terms: list[str]) -> None:
    where = Path(config_dir) / "clinic.toml"
    for field in CLINIC_TEXTS:
        label = f"{where} [sms] {_CLINIC_KEYS.get(field, field)}"
        try:
            text = templates.render_text(getattr(templates.clinic, field), {})
        except TemplateError as error:
            found.error(f"{label}: {error}")
            continue
        if not text and field != "sms_footer":
            found.error(f"{label}: renders empty")
        _check_sms_text(found, label, text, True, terms, None, None)


def check_templates(config_dir: Path, messages_dir: Path, clinic: Clinic,
                    campaigns: dict[str, Campaign]) -> tuple[list[str], list[str]]:
    """(errors, warnings) from rendering every template of every campaign with samples:
    SMS both discreet and not, every locale file, optional values filled and empty."""
    found, templates = _Findings(), Templates(messages_dir, clinic)
    terms = load_sensitive_terms(config_dir)
    if not terms:
        found.warn(f"{Path(config_dir) / 'sensitive_terms.txt'}: missing or empty; discreet SMS are not checked")
    for campaign in campaigns.values():
        for step in campaign.steps:
            for channel in step.channels:
                _check_step(found, templates, campaign, step, channel, terms)
    if Path(messages_dir).is_dir():
        _check_strays(found, Path(messages_dir), campaigns)
    _check_clinic_texts(found, templates, config_dir, terms)
    return list(found.errors.values()), list(found.warnings.values())
