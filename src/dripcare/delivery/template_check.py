"""`dripcare templates check` and `preview`: every template rendered with sample data,
SMS both discreet and not, each locale present, optional values filled and empty, each
modality (SPEC 4).

What the check holds every rendering to:
- it renders (no missing variable, no literal None, no clinic value the clinic lacks);
- a discreet SMS, and a discreet email's subject, opening lines and layout, name no
  sensitive term (the matcher the dispatcher uses at send time);
- an SMS fits `[sms] max_segments` with the footer of the patient's locale, since the
  footer may ride on any of them (the first SMS of an enrollment, the first after START);
- the [sms] and [sms.<locale>] texts (footer, replies) obey the same rules.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path

import jinja2
from markupsafe import Markup

from dripcare.config.clinic import SMS_TEXTS, Clinic
from dripcare.config.terms import TERMS_FILE, load_sensitive_terms
from dripcare.delivery.templates import (EMAIL_LAYOUT, GSM7, PatientFacts, SessionFacts, TemplateError, Templates,
                                         build_context, missing_instruction, sms_segments, template_name)
from dripcare.domain import inputs
from dripcare.domain.campaign import Campaign, Step
from dripcare.domain.discreet import SensitiveTerms
from dripcare.domain.timing import apply_offset, resolve_wall, zone

# --- Sample data for `templates check` and `templates preview` ------------------------

_SAMPLE_DAYS = (0, 2, 4, 7, 9, 11)  # Mon/Wed/Fri over two weeks
# Long on purpose: an SMS that fits with these fits most patients.
SAMPLE_FIRST_NAME, SAMPLE_PREFERRED_NAME = "Bartholomew", "Maximiliano"
SAMPLE_LOCATION = "Suite 210, Riverbend Medical Building, 100 River Road NW"
# What staff pass to --modality (docs/writing-messages.md): every one is rendered.
MODALITIES = dict(zip(inputs.MODALITIES, (  # the vocabulary staff may enter, each described
    "IV infusion in the clinic",
    "intramuscular injection in the clinic",
    "esketamine nasal spray in the clinic",
    "lozenge under the tongue, at home",
    "lozenge or tablet by mouth, at home"), strict=True))
# A lock screen or an inbox list shows about this much of an email's first lines.
EMAIL_OPENING = 200


def sample_sessions(clinic: Clinic, filled: bool = True, modality: str | None = None) -> list[SessionFacts]:
    """A six-session course from Monday 2026-06-08 09:30 in the clinic's zone."""
    tz = zone(clinic.timezone)
    first = datetime(2026, 6, 8, 9, 30)
    return [SessionFacts(
        starts_at=resolve_wall(first + timedelta(days=day), tz), number=n, count=len(_SAMPLE_DAYS),
        is_first=n == 1, is_last=n == len(_SAMPLE_DAYS), modality=modality if filled else None,
        location=SAMPLE_LOCATION if filled else None, duration_minutes=120)
        for n, day in enumerate(_SAMPLE_DAYS, 1)]


def _anchor_sessions(step: Step, sessions: list[SessionFacts]) -> list[SessionFacts | None]:
    if step.anchor == "enrollment":
        return [None]
    if step.anchor == "first_session":
        return [sessions[0]]
    if step.anchor == "last_session":
        return [sessions[-1]]
    return [sessions[0], sessions[len(sessions) // 2], sessions[-1]]


def _variants(filled: tuple[bool, ...], modalities: tuple[str | None, ...]) -> list[tuple[bool, str | None]]:
    """(filled, modality): filled samples once per modality; empty ones have none."""
    return [(full, m) for full in filled for m in (modalities if full else (None,))]


def sample_contexts(clinic: Clinic, campaign: Campaign, step: Step, locale: str, *,
                    discreet: tuple[bool, ...] = (False, True),
                    filled: tuple[bool, ...] = (True, False),
                    modalities: tuple[str | None, ...] = tuple(MODALITIES)) -> list[tuple[str, dict]]:
    """(label, context) for each sample: `now` is the step's due time for that session;
    "empty" samples have no preferred name, location or modality, and (enrollment
    steps) no sessions booked yet."""
    tz = zone(clinic.timezone)
    enrolled = resolve_wall(datetime(2026, 5, 25, 14, 0), tz)
    samples = []
    for full, modality in _variants(filled, modalities):
        sessions = sample_sessions(clinic, full, modality)
        for session in _anchor_sessions(step, sessions):
            anchor = session.starts_at if session else enrolled
            now = apply_offset(anchor, step.offset, tz, step.at)
            for hidden in discreet:
                patient = PatientFacts(SAMPLE_FIRST_NAME, SAMPLE_PREFERRED_NAME if full else None, locale, hidden,
                                       clinic.timezone)
                label = ", ".join(filter(None, [
                    "discreet" if hidden else "not discreet",
                    "optional values filled" if full else "optional values empty",
                    f"modality {modality}" if modality else None,
                    f"session {session.number} of {session.count}" if session else None]))
                samples.append((label, build_context(
                    patient=patient, clinic=clinic, campaign=campaign, session=session,
                    sessions=sessions if (full or session) else [], now=now)))
    return samples


# --- templates check --------------------------------------------------------------------

_NONE = re.compile(r"\bNone\b")


class _Findings:
    """One line per problem, not per sample: the first sample that showed it is named."""

    def __init__(self):
        self.errors: dict[str, str] = {}
        self.warnings: dict[str, str] = {}

    def error(self, problem: str, sample: str | None = None) -> None:
        self.errors.setdefault(problem, f"{problem} ({sample})" if sample else problem)

    def warn(self, problem: str, sample: str | None = None) -> None:
        self.warnings.setdefault(problem, f"{problem} ({sample})" if sample else problem)


class _Rules:
    """What every SMS text is held to: the clinic's limit and its sensitive terms."""

    def __init__(self, found: _Findings, clinic: Clinic, terms: SensitiveTerms):
        self.found, self.max_segments, self.terms = found, clinic.max_segments, terms

    def sms(self, where: str, text: str, discreet: bool, sample: str | None, with_footer: bool = False) -> None:
        if _NONE.search(text):
            self.found.error(f"{where}: renders a literal None", sample)
        if discreet:
            self.discreet(where, "discreet SMS", text, sample)
        segments, encoding = sms_segments(text)
        if segments > self.max_segments:
            footer = " with the footer" if with_footer else ""
            self.found.error(f"{where}: {segments} SMS segments ({encoding}){footer}, more than "
                             f"[sms] max_segments = {self.max_segments}", sample)
        symbol = _avoidable_ucs2(text)
        if symbol:
            self.found.warn(f"{where}: {symbol!r} (U+{ord(symbol):04X}) is not GSM-7 and not a letter: the whole "
                            f"text goes as UCS-2, 70 characters a segment instead of 160", sample)

    def discreet(self, where: str, what: str, text: str, sample: str | None) -> None:
        for term in self.terms.found(text):
            self.found.error(f"{where}: {what} names {term!r}", sample)


def _avoidable_ucs2(text: str) -> str | None:
    """The first character outside GSM-7 that is not a letter (an emoji, a symbol): the
    letters of a language are kept whatever they cost (SPEC 4), the rest is a choice."""
    return next((c for c in text if c not in GSM7 and not unicodedata.category(c).startswith(("L", "M"))), None)


def _locales(messages_dir: Path, campaign_id: str, step_id: str, channel: str) -> list[str]:
    folder = messages_dir / campaign_id
    if channel == "sms":
        pattern, cut = f"{step_id}.sms.*.j2", (len(f"{step_id}.sms."), -len(".j2"))
    else:
        pattern, cut = f"{step_id}.email.*.md.j2", (len(f"{step_id}.email."), -len(".md.j2"))
    return sorted(p.name[cut[0]:cut[1]] for p in folder.glob(pattern))


def _check_sample(rules: _Rules, templates: Templates, campaign: Campaign, step: Step, channel: str,
                  locale: str, where: str, sample: str, context: dict) -> None:
    discreet = context["patient"]["discreet"]
    if channel == "sms":
        footer = templates.clinic.sms_text("footer", locale) or None
        text = templates.render_sms(campaign.id, step.id, locale, context, footer=footer).text
        rules.sms(where, text, discreet, sample, with_footer=bool(footer))
        return
    subject, body = templates.email_text(campaign.id, step.id, locale, context)
    if _NONE.search(subject) or _NONE.search(body):
        rules.found.error(f"{where}: renders a literal None", sample)
    if discreet:
        rules.discreet(where, "discreet email subject", subject, sample)
        rules.discreet(where, f"discreet email's first {EMAIL_OPENING} characters", body[:EMAIL_OPENING], sample)


_INCLUDE = re.compile(r"""{%-?\s*(?:include|import|from|extends)\b(\s*["']([^"']+)["'])?""")


def _mentions(messages_dir: Path, name: str, word: str, depth: int = 0) -> bool:
    """Does a template, or one it includes, mention `word`? When unsure, yes."""
    try:
        source = (messages_dir / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True
    if word in source:
        return True
    included = _INCLUDE.findall(source)
    if any(not target for _, target in included) or (included and depth > 5):
        return True  # a template name computed at render time: cannot tell
    return any(_mentions(messages_dir, target, word, depth + 1) for _, target in included)


def _check_step(rules: _Rules, templates: Templates, campaign: Campaign, step: Step, channel: str) -> None:
    clinic, messages_dir = templates.clinic, templates.messages_dir
    base = template_name(campaign.id, step.id, channel)
    if not (messages_dir / base).is_file():
        rules.found.error(f"{messages_dir / base}: missing template for step {step.id!r} ({channel})")
        return
    files = _locales(messages_dir, campaign.id, step.id, channel)
    # A locale with its own [sms.<locale>] texts but no template file gets the base file
    # with its own footer: that pair is checked too.
    others = set(files) | (set(clinic.sms_locales) if channel == "sms" else set())
    for locale in [clinic.locale, *sorted(others - {clinic.locale})]:
        name = template_name(campaign.id, step.id, channel, locale) if locale in files else base
        where = str(messages_dir / name)
        # Modality variants only where the wording can follow the modality (a faster check).
        modalities = tuple(MODALITIES) if _mentions(messages_dir, name, "modality") else tuple(MODALITIES)[:1]
        for sample, context in sample_contexts(clinic, campaign, step, locale, modalities=modalities):
            try:
                _check_sample(rules, templates, campaign, step, channel, locale, where, sample, context)
            except TemplateError as error:
                # A syntax error or a missing file is the same for every sample: name none.
                static = isinstance(error.__cause__, jinja2.TemplateSyntaxError | jinja2.TemplateNotFound)
                rules.found.error(str(error), None if static else sample)


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


_COMMENT = re.compile(r"{#.*?#}", re.S)
_INSTRUCTION = re.compile(r"""\bclinic\.instructions(?:\.([A-Za-z_]\w*)|\[\s*["']([^"']+)["']\s*\])""")


def _instruction_uses(source: str) -> list[tuple[str, int]]:
    """(key, line) of every `clinic.instructions.<key>` or `clinic.instructions["key"]`
    outside comments (comments are blanked, lines kept)."""
    source = _COMMENT.sub(lambda m: "\n" * m[0].count("\n"), source)
    return [(m[1] or m[2], source.count("\n", 0, m.start()) + 1) for m in _INSTRUCTION.finditer(source)]


_DICT_METHODS = frozenset(("get", "items", "keys", "values"))


def _check_instructions(found: _Findings, templates: Templates) -> None:
    """Every clinic value a template names must be in clinic.toml [instructions], whichever
    branch uses it (a sample may never reach that branch)."""
    defined = set(templates.clinic.instructions)
    for path in sorted(templates.messages_dir.rglob("*.j2")):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # rendering names it
        for key, line in _instruction_uses(source):
            if key not in defined and key not in _DICT_METHODS:
                found.error(f"{path}: line {line}: {missing_instruction(key)}")


def _check_layout(rules: _Rules, templates: Templates, locales: list[str]) -> None:
    """The email shell's header and footer, as a discreet patient's inbox shows them."""
    where = str(templates.messages_dir / EMAIL_LAYOUT)
    for locale in locales:
        try:
            html = templates.layout_html("", Markup(""), templates.language(locale), discreet=True,
                                         unsubscribe_url="https://example.org/u/x")
        except TemplateError as error:
            rules.found.error(str(error))
            return
        rules.discreet(where, f"discreet email layout ({locale})", re.sub(r"<[^>]+>", " ", html), None)


def _check_clinic_texts(rules: _Rules, templates: Templates, config_dir: Path) -> None:
    """[sms] and each [sms.<locale>]: every text renders, names no sensitive term (every
    patient gets them, discreet or not) and fits the segment limit."""
    clinic, where = templates.clinic, Path(config_dir) / "clinic.toml"
    tables = [("sms", {key: getattr(clinic, attr) for key, attr in SMS_TEXTS.items()})]
    tables += [(f"sms.{locale}", clinic.sms_by_locale[locale]) for locale in clinic.sms_locales]
    for table, texts in tables:
        for key, source in texts.items():
            label = f"{where} [{table}] {key}"
            try:
                text = templates.render_text(source, {})
            except TemplateError as error:
                rules.found.error(f"{label}: {error}")
                continue
            if not text and key != "footer":
                rules.found.error(f"{label}: renders empty")
            rules.sms(label, text, True, None)


def check_templates(config_dir: Path, messages_dir: Path, clinic: Clinic,
                    campaigns: dict[str, Campaign]) -> tuple[list[str], list[str]]:
    """(errors, warnings), one line each: every template of every campaign rendered with
    samples (see the module's docstring for what each is held to), the email layout, the
    clinic's [sms] texts, and every clinic value a template names."""
    found, templates = _Findings(), Templates(messages_dir, clinic)
    terms = load_sensitive_terms(config_dir)
    if not terms:
        found.warn(f"{Path(config_dir) / TERMS_FILE}: missing or empty; discreet SMS are not checked")
    rules = _Rules(found, clinic, terms)
    if Path(messages_dir).is_dir():
        _check_instructions(found, templates)
    locales = {clinic.locale}
    for campaign in campaigns.values():
        for step in campaign.steps:
            for channel in step.channels:
                _check_step(rules, templates, campaign, step, channel)
                if channel == "email":
                    locales.update(_locales(Path(messages_dir), campaign.id, step.id, channel))
    if any("email" in s.channels for c in campaigns.values() for s in c.steps):
        _check_layout(rules, templates, sorted(locales))
    if Path(messages_dir).is_dir():
        _check_strays(found, Path(messages_dir), campaigns)
    _check_clinic_texts(rules, templates, config_dir)
    return list(found.errors.values()), list(found.warnings.values())
