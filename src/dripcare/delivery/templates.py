"""What patients read: sandboxed Jinja2 with locale fallback, Markdown email, SMS cleaning
and segment counts (SPEC 4). `template_check` holds `templates check` and its samples.

One `Templates` per process: its environment caches compiled templates and re-reads a
file only when it changes, so a fixed typo shows in the next message sent.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import jinja2
from jinja2 import FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup

from dripcare.domain.campaign import Campaign
from dripcare.config.clinic import Clinic
from dripcare.domain.timing import zone

EMAIL_LAYOUT = "_layouts/email.html.j2"
_UNSUBSCRIBE = {"en": "Unsubscribe", "es": "Darse de baja"}  # the plain-text part's last line


class TemplateError(Exception):
    """One line: which template, what is wrong (and the line, when Jinja knows it)."""


class Instructions(dict):
    """clinic.toml [instructions] as templates see it (`clinic.instructions.fasting_hours`)."""


def missing_instruction(key: str) -> str:
    return f"clinic.instructions.{key} is not in clinic.toml [instructions]; add {key} there"


class _Undefined(StrictUndefined):
    """StrictUndefined, and a clinic value the clinic file lacks is named as such."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, Instructions) and isinstance(self._undefined_name, str):
            return missing_instruction(self._undefined_name)
        return super()._undefined_message


def clinic_view(clinic: Clinic) -> dict[str, object]:
    """What templates see as `clinic`: its values, and its [instructions]."""
    values = clinic.template_context()
    values["instructions"] = Instructions(values.get("instructions") or {})
    return values


@dataclass(frozen=True)
class PatientFacts:
    first_name: str
    preferred_name: str | None
    locale: str
    discreet: bool
    timezone: str


@dataclass(frozen=True)
class SessionFacts:
    starts_at: datetime  # aware, UTC
    number: int
    count: int
    is_first: bool
    is_last: bool
    modality: str | None
    location: str | None
    duration_minutes: int


@dataclass(frozen=True)
class SmsRendering:
    text: str
    segments: int
    encoding: str  # "GSM-7" or "UCS-2"


@dataclass(frozen=True)
class EmailRendering:
    subject: str
    text: str
    html: str


# --- SMS text: GSM-7, cleaning, segments ---------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # each costs an escape septet: counts 2
GSM7 = GSM7_BASIC | GSM7_EXTENSION

# One non-GSM-7 character turns the whole text into UCS-2 (70 per segment instead of
# 160), and editors love curly quotes and long dashes: punctuation with a GSM-7 twin is
# replaced. Letters are the patient's language and never change (SPEC 4): "sesión" stays.
_TWINS = str.maketrans({
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4`\u2039\u203a", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2022\u00b7", "-"),
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
    # Bidirectional overrides and isolates can make a text read differently than it is.
    **dict.fromkeys("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f", ""),
    "\u2026": "...", "\ufb01": "fi", "\ufb02": "fl",
})
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (Cc): ESC, BEL, tabs...


def clean_sms(text: str) -> str:
    """Whitespace (non-breaking and thin spaces too) folded to single spaces; punctuation
    with a GSM-7 twin replaced by it; control characters dropped; letters kept as written."""
    return " ".join(_CONTROL.sub(" ", text.translate(_TWINS)).split())


def _segments(units: list[int], single: int, multi: int) -> int:
    if sum(units) <= single:
        return 1 if units else 0
    segments, used = 1, 0
    for size in units:  # a character is never split across two segments
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return segments


def sms_segments(text: str) -> tuple[int, str]:
    """(segments, "GSM-7" | "UCS-2"): GSM-7 160 alone or 153 per part (extension
    characters count 2); UCS-2 70 or 67 UTF-16 code units."""
    if all(c in GSM7 for c in text):
        return _segments([2 if c in GSM7_EXTENSION else 1 for c in text], 160, 153), "GSM-7"
    return _segments([2 if ord(c) > 0xFFFF else 1 for c in text], 70, 67), "UCS-2"


# --- Dates and times the way a patient says them ---------------------------------------

@dataclass(frozen=True)
class _Phrasing:
    weekdays: tuple[str, ...]
    months: tuple[str, ...]
    near: tuple[str, str, str]  # yesterday, today, tomorrow
    on: str  # "on {}"
    date: Callable[[str, str, int], str]  # weekday, month, day
    day_month: Callable[[str, int], str]  # month, day: a date without its weekday
    year: Callable[[str, int], str]  # date text, year
    clock: Callable[[time], str]
    at: Callable[[str, time, str], str]  # day phrase, time, clock text
    units: dict[str, tuple[str, str]]  # "hour": ("hour", "hours")


_PHRASING = {
    "en": _Phrasing(
        weekdays=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        months=("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"),
        near=("yesterday", "today", "tomorrow"), on="on {}",
        date=lambda weekday, month, day: f"{weekday}, {month} {day}",
        day_month=lambda month, day: f"{month} {day}",
        year=lambda text, year: f"{text}, {year}",
        clock=lambda t: f"{t.hour % 12 or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}",
        at=lambda day, t, clock: f"{day} at {clock}",
        units={"hour": ("hour", "hours"), "minute": ("minute", "minutes")}),
    "es": _Phrasing(
        weekdays=("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
        months=("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
                "septiembre", "octubre", "noviembre", "diciembre"),
        near=("ayer", "hoy", "mañana"), on="el {}",
        date=lambda weekday, month, day: f"{weekday} {day} de {month}",
        day_month=lambda month, day: f"{day} de {month}",
        year=lambda text, year: f"{text} de {year}",
        clock=lambda t: f"{t.hour}:{t.minute:02d}",
        at=lambda day, t, clock: f"{day} a la{'' if t.hour == 1 else 's'} {clock}",
        units={"hour": ("hora", "horas"), "minute": ("minuto", "minutos")}),
}
_LOCALE_IN_NAME = re.compile(r"\.(?:sms\.([\w-]+)\.j2|email\.([\w-]+)\.md\.j2)$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def _date_text(day: date, now: datetime, words: _Phrasing, weekday: bool = True) -> str:
    month = words.months[day.month - 1]
    text = words.date(words.weekdays[day.weekday()], month, day.day) if weekday else words.day_month(month, day.day)
    return text if day.year == now.year else words.year(text, day.year)


def _relative_day(day: date, now: datetime, words: _Phrasing, weekday: bool = True) -> str:
    """ "today", "on Friday", "on Friday, June 19"; without the weekday, "on June 19"
    (a short SMS that must stay GSM-7: "sábado" is not)."""
    days = (day - now.date()).days
    if -1 <= days <= 1:
        return words.near[days + 1]
    if -6 <= days <= 6 and weekday:
        return words.on.format(words.weekdays[day.weekday()])
    return words.on.format(_date_text(day, now, words, weekday))


def _number(value) -> int | float:
    if isinstance(value, jinja2.Undefined):
        str(value)  # raises the UndefinedError that names what is missing
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise jinja2.TemplateRuntimeError(f"hours and minutes filters need a number, got {value!r}")
    return value


def _hours_before(value, hours) -> datetime:
    """`session.starts_at | hours_before(clinic.instructions.fasting_hours) | time`: the
    clock time that many hours before (elapsed time, so right across a DST change)."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    if not isinstance(value, datetime):
        raise jinja2.TemplateRuntimeError(f"hours_before needs a datetime, got {value!r}")
    return (value.astimezone(timezone.utc) - timedelta(hours=_number(hours))).astimezone(value.tzinfo)


# --- Context --------------------------------------------------------------------------

def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


def _session_view(session: SessionFacts, tz) -> dict:
    starts_at = _aware(session.starts_at, "session.starts_at").astimezone(tz)
    return {"starts_at": starts_at, "number": session.number, "count": session.count,
            "is_first": session.is_first, "is_last": session.is_last, "modality": session.modality,
            "location": session.location, "duration_minutes": session.duration_minutes}


def build_context(*, patient: PatientFacts, clinic: Clinic, campaign: Campaign,
                  session: SessionFacts | None, sessions: list[SessionFacts], now: datetime) -> dict:
    """What a template sees (SPEC 4): times in the patient's own zone."""
    tz = zone(patient.timezone)
    return {
        "patient": {"first_name": patient.first_name, "preferred_name": patient.preferred_name,
                    "name": patient.preferred_name or patient.first_name,
                    "locale": patient.locale, "discreet": patient.discreet},
        "clinic": clinic_view(clinic),
        "campaign": {"id": campaign.id, "name": campaign.name},
        "session": _session_view(session, tz) if session is not None else None,
        "sessions": [_session_view(s, tz) for s in sessions],
        "now": _aware(now, "now").astimezone(tz),
    }


# --- Rendering ------------------------------------------------------------------------

def template_name(campaign_id: str, step_id: str, channel: str, locale: str | None = None) -> str:
    """The loader name of a step's template; with `locale`, the localized variant."""
    if channel == "sms":
        return f"{campaign_id}/{step_id}.sms.{locale}.j2" if locale else f"{campaign_id}/{step_id}.sms.j2"
    return f"{campaign_id}/{step_id}.email.{locale}.md.j2" if locale else f"{campaign_id}/{step_id}.email.md.j2"


def _refuse_none(value):
    # A None printed into a patient's text reads "Hi None": fail instead (SPEC 4).
    if value is None:
        raise jinja2.TemplateRuntimeError("prints an empty value (None); guard it with {% if ... %}")
    return value


def _line_of(error: Exception, filename: str | None) -> int | None:
    if isinstance(error, jinja2.TemplateSyntaxError):
        return error.lineno
    # Jinja rewrites the traceback so a template's frames carry its own file and line.
    frames = [f for f in traceback.extract_tb(error.__traceback__) if filename and f.filename == filename]
    return frames[-1].lineno if frames else None


def _one_line(error: Exception) -> str:
    text = error.message if isinstance(error, jinja2.TemplateError) and error.message else str(error)
    text = " ".join(text.split()) or type(error).__name__
    return text if isinstance(error, jinja2.TemplateError) else f"{type(error).__name__}: {text}"


class Templates:
    def __init__(self, messages_dir: Path, clinic: Clinic):
        self.messages_dir = Path(messages_dir)
        self.clinic = clinic
        # Immutable: one context's lists and dicts are shared by every rendering of it.
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(self.messages_dir)), undefined=_Undefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            trim_blocks=True, lstrip_blocks=True, finalize=_refuse_none)
        self.env.filters.update(date=self._date, time=self._time, when=self._when, at_time=self._at_time,
                                relative_day=self._relative_day, hours=self._hours, minutes=self._minutes,
                                hours_before=_hours_before)
        # html off: a tag in the Markdown (a patient's name, say) is shown, never run.
        self.markdown = MarkdownIt("commonmark", {"html": False})
        self._strings: dict[str, jinja2.Template] = {}

    def use(self, clinic: Clinic) -> None:
        """A new clinic.toml, taken while running: the next rendering reads it."""
        self.clinic = clinic

    # Filters: `now` and the language come from the rendering, never the system.
    def _local(self, context, value) -> tuple[datetime, datetime, _Phrasing]:
        if isinstance(value, jinja2.Undefined):
            str(value)  # raises the UndefinedError that names what is missing
        now = context.get("now")
        if not isinstance(value, datetime) or not isinstance(now, datetime):
            raise jinja2.TemplateRuntimeError(f"date and time filters need a datetime and `now`, got {value!r}")
        return value.astimezone(now.tzinfo), now, _PHRASING[self._language(context.name)]

    def language(self, locale: str | None) -> str:
        """The language dates are phrased in for a locale ("es-MX": "es"); English when
        dripcare has no phrasing for it."""
        language = (locale or self.clinic.locale).replace("_", "-").split("-")[0].lower()
        return language if language in _PHRASING else "en"

    def _language(self, name: str | None) -> str:
        match = _LOCALE_IN_NAME.search(name or "")
        return self.language((match and (match[1] or match[2])) or None)

    @pass_context
    def _date(self, context, value, weekday: bool = True) -> str:
        value, now, words = self._local(context, value)
        return _date_text(value.date(), now, words, weekday)

    @pass_context
    def _time(self, context, value) -> str:
        value, _, words = self._local(context, value)
        return words.clock(value.time())

    @pass_context
    def _at_time(self, context, value) -> str:
        """ "at 5:30 AM", "a las 5:30", "a la 1:30": a clock time in a sentence."""
        value, _, words = self._local(context, value)
        return words.at("", value.time(), words.clock(value.time())).strip()

    @pass_context
    def _relative_day(self, context, value, weekday: bool = True) -> str:
        value, now, words = self._local(context, value)
        return _relative_day(value.date(), now, words, weekday)

    @pass_context
    def _when(self, context, value, weekday: bool = True) -> str:
        """ "tomorrow at 9:30 AM", "on Friday at 9:30 AM", "on Friday, June 18 at 9:30 AM";
        `when(weekday=false)`: "tomorrow at 9:30 AM", "on June 18 at 9:30 AM"."""
        value, now, words = self._local(context, value)
        day = _relative_day(value.date(), now, words, weekday)
        return words.at(day, value.time(), words.clock(value.time()))

    @pass_context
    def _hours(self, context, value) -> str:
        """`clinic.instructions.fasting_hours | hours`: "4 hours", "1 hour", "4 horas"."""
        return self._count(context, value, "hour")

    @pass_context
    def _minutes(self, context, value) -> str:
        return self._count(context, value, "minute")

    def _count(self, context, value, unit: str) -> str:
        number = _number(value)
        one, many = _PHRASING[self._language(context.name)].units[unit]
        shown = f"{number:g}" if isinstance(number, float) else str(number)
        return f"{shown} {one if number == 1 else many}"

    def _error(self, name: str, error: Exception, filename: str | None = None) -> TemplateError:
        if isinstance(error, jinja2.TemplateNotFound):  # TemplatesNotFound: no locale variant nor base
            missing = name if isinstance(error, jinja2.TemplatesNotFound) else error.name
            return TemplateError(f"{self.messages_dir / missing}: missing template")
        if isinstance(error, jinja2.TemplateSyntaxError) and error.name:
            name = error.name
        line = _line_of(error, filename)
        where = f"{self.messages_dir / name}" + (f": line {line}" if line else "")
        return TemplateError(f"{where}: {_one_line(error)}")

    def _select(self, campaign_id: str, step_id: str, channel: str, locale: str | None) -> jinja2.Template:
        """The localized template when there is one, else the clinic-locale base file."""
        names = []
        if locale and _LOCALE.match(locale) and locale != self.clinic.locale:
            names += [template_name(campaign_id, step_id, channel, locale.replace("_", "-")),
                      template_name(campaign_id, step_id, channel, locale.replace("_", "-").split("-")[0])]
        names.append(template_name(campaign_id, step_id, channel))
        try:
            return self.env.select_template(list(dict.fromkeys(names)))
        except Exception as error:
            raise self._error(names[-1], error) from error

    def _run(self, template: jinja2.Template, produce: Callable[[], str]) -> str:
        try:
            return produce()
        except Exception as error:  # templates are edited by staff: anything they raise is theirs
            raise self._error(template.name, error, template.filename) from error

    def _block(self, template: jinja2.Template, block: str, context: jinja2.runtime.Context) -> str:
        if block not in template.blocks:
            raise TemplateError(f"{self.messages_dir / template.name}: no {{% block {block} %}}")

        def produce() -> str:
            try:
                return "".join(template.blocks[block](context))
            except Exception:
                self.env.handle_exception()  # as render() does: the traceback gets template lines
        return self._run(template, produce)

    def render_sms(self, campaign_id: str, step_id: str, locale: str, context: dict,
                   footer: str | None = None) -> SmsRendering:
        template = self._select(campaign_id, step_id, "sms", locale)
        text = clean_sms(self._run(template, lambda: template.render(context)))
        if not text:
            raise TemplateError(f"{self.messages_dir / template.name}: renders an empty SMS")
        if footer:
            text = f"{text}\n{self.render_text(footer, context)}"
        return SmsRendering(text, *sms_segments(text))

    def render_email(self, campaign_id: str, step_id: str, locale: str, context: dict,
                     unsubscribe_url: str | None = None) -> EmailRendering:
        template, subject, body = self._email_blocks(campaign_id, step_id, locale, context)
        language = self._language(template.name)
        html = self.layout_html(subject, Markup(self.markdown.render(body)), language,
                                discreet=bool(context.get("patient", {}).get("discreet")),
                                unsubscribe_url=unsubscribe_url)
        # Plain-text readers need the way out as much as HTML readers do.
        label = _UNSUBSCRIBE.get(language, "Unsubscribe")
        text = f"{body}\n\n--\n{label}: {unsubscribe_url}" if unsubscribe_url else body
        return EmailRendering(subject=subject, text=text, html=html)

    def email_text(self, campaign_id: str, step_id: str, locale: str, context: dict) -> tuple[str, str]:
        """(subject, Markdown body) without the HTML: what `templates check` reads."""
        _, subject, body = self._email_blocks(campaign_id, step_id, locale, context)
        return subject, body

    def _email_blocks(self, campaign_id: str, step_id: str, locale: str,
                      context: dict) -> tuple[jinja2.Template, str, str]:
        template = self._select(campaign_id, step_id, "email", locale)
        blocks = template.new_context(context)
        subject = " ".join(self._block(template, "subject", blocks).split())
        body = self._block(template, "body", blocks).strip()
        if not subject:
            raise TemplateError(f"{self.messages_dir / template.name}: renders an empty subject")
        return template, subject, body

    def layout_html(self, subject: str, body_html: Markup, language: str, *, discreet: bool,
                    unsubscribe_url: str | None = None) -> str:
        """The email shell around a body. `discreet`: the header and footer show the
        clinic's neutral name (`sms_name`), since a lock screen shows the first lines."""
        layout = self._layout()
        return self._run(layout, lambda: layout.render(
            subject=subject, body_html=body_html, clinic=clinic_view(self.clinic), discreet=discreet,
            unsubscribe_url=unsubscribe_url, locale=language))

    def _layout(self) -> jinja2.Template:
        try:
            return self.env.get_template(EMAIL_LAYOUT)
        except Exception as error:
            raise self._error(EMAIL_LAYOUT, error) from error

    def render_text(self, source: str, context: dict) -> str:
        """A clinic.toml string (help_reply, footer...): same sandbox, cleaned as SMS.
        `clinic` is always there; `context` may add or override."""
        template = self._strings.get(source)
        if template is None:
            try:
                template = self._strings[source] = self.env.from_string(source)
            except jinja2.TemplateSyntaxError as error:
                raise TemplateError(f"text {source[:40]!r}: line {error.lineno}: {_one_line(error)}") from None
        try:
            return clean_sms(template.render({"clinic": clinic_view(self.clinic), **context}))
        except Exception as error:
            raise TemplateError(f"text {source[:40]!r}: {_one_line(error)}") from None
