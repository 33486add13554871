"""The pictures (SPEC 9 `--html FILE`): a patient's course on a time axis, and the
clinic's sending as charts. Each is one self-contained page: inline SVG and CSS, no
script, font, image or link to anywhere (its Content-Security-Policy forbids loading
anything), so it opens offline in any browser and can be attached to an email.

The timeline page shows a patient's data and is kept like the chart; the report page has
counts only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from markupsafe import escape

from dripcare.app import timelines
from dripcare.app.timelines import REASON_MEANS
from dripcare.app.wording import when
from dripcare.domain.inputs import BadInput
from dripcare.domain.statuses import MessageStatus as S
from dripcare.domain.timing import resolve_wall, zone

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"
STATE_COLOURS = {
    S.SCHEDULED: "#2b6cb0", S.SENDING: "#6b46c1", S.UNCONFIRMED: "#b7791f", S.SENT: "#38a169",
    S.DELIVERED: "#22543d", S.UNDELIVERED: "#dd6b20", S.FAILED: "#c53030", S.EXPIRED: "#718096",
    S.SKIPPED: "#a0aec0", S.CANCELLED: "#4a5568",
}
PLANNED_COLOUR = STATE_COLOURS[S.SCHEDULED]
# Drawn hollow: nothing was sent (colour alone must not carry the difference).
NOT_SENT = (S.EXPIRED, S.SKIPPED, S.CANCELLED)
SESSION_COLOURS = {"scheduled": "#2b6cb0", "completed": "#38a169", "cancelled": "#a0aec0", "no_show": "#dd6b20"}
SOURCE_COLOURS = {"staff": "#2b6cb0", "import": "#6b46c1", "sms_keyword": "#c53030",
                  "email_unsubscribe": "#dd6b20", "carrier": "#718096"}
REPLY_COLOURS = {"opt_out": "#c53030", "opt_in": "#38a169", "help": "#2b6cb0", "crisis": "#742a2a",
                 "reply": "#718096"}
STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c;
       margin: 24px; max-width: 1280px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 14px; margin: 16px 0 4px; }
p.meta { color: #4a5568; margin: 0 0 12px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #1a202c; }
svg text.small { font-size: 10px; fill: #4a5568; } svg text.mark { font-size: 9px; fill: #fff; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e2e8f0; text-align: left; vertical-align: middle; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.nw { white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.legend span.item { margin-right: 14px; white-space: nowrap; }
.note { color: #4a5568; font-size: 12px; }
"""


def page(title: str, body: str) -> str:
    """One self-contained HTML document: nothing in it loads from anywhere."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="referrer" content="no-referrer">\n'
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write_page(path: str | Path, html: str) -> Path:
    """Write a page where staff asked (`--html FILE`); one line when it cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise BadInput(f"--html {target} is a folder; give a file name like {target / 'page.html'}")
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as error:
        raise BadInput(f"cannot write --html {target}: {error.strerror or error}") from None
    return target


# --- drawing helpers -----------------------------------------------------------------------------

def _text(x: float, y: float, text: str, cls: str | None = None, anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


def _swatch(colour: str, hollow: bool = False) -> str:
    style = f"border: 2px solid {colour}; width: 6px; height: 6px; background: #fff" if hollow \
        else f"background: {colour}"
    return f'<span class="swatch" style="{style}"></span>'


def _legend(items: list[tuple[str, str, bool]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span class="item">{_swatch(colour, hollow)}{escape(label)}</span>' for label, colour, hollow in items) + "</p>"


def text_width(text: str) -> float:
    return 6.2 * len(text)  # 11px system-ui, near enough for keeping labels apart


def reason_text(reason: str | None) -> str:
    """A reason word with what it means, as the timeline's legend says it."""
    if not reason:
        return ""
    means = REASON_MEANS.get(reason.split(":")[0])
    return f"{reason} ({means})" if means else reason


# --- the course of one patient -------------------------------------------------------------------

@dataclass(frozen=True)
class Mark:
    """One message as the timeline draws it."""

    number: int
    message_id: int
    step: str
    channel: str
    status: str
    why: str | None  # the timeline's reason: why it was not sent, or why its time is not the step's own
    at: datetime  # when it went out, else when it is (or was) due
    went_out: bool
    session: int | None  # the session's number in the course

    def label(self, tz_name: str) -> str:
        """What the chart writes beside the mark (the list below has the rest)."""
        moment = f"{'sent' if self.went_out else 'due'} {when(self.at, tz_name, year=False)}"
        session = f" · session #{self.session}" if self.session else ""
        why = f": {self.why}" if self.why else ""
        return f"{self.step} · {self.channel}{session} · {moment} · {self.status}{why}"


@dataclass(frozen=True)
class Booked:
    """One session as the timeline draws it."""

    number: int
    id: int
    campaign: str
    starts_at: datetime
    duration_minutes: int
    status: str
    external_id: str | None


@dataclass(frozen=True)
class Course:
    patient_id: int
    name: str
    external_id: str | None
    timezone: str
    now: datetime
    sessions: list[Booked]
    marks: list[Mark]
    notes: list[str]  # why nothing is planned on a channel the campaign uses


def _moment(m) -> datetime:
    """When it went out; else when it goes (a retry or a deferral at its next attempt)."""
    if m.sent_at is not None:
        return m.sent_at
    return m.next_attempt_at if m.status == S.SCHEDULED and m.next_attempt_at else m.due_at


def course_of_view(view: timelines.Timeline) -> Course:
    """The patient's course as `dripcare timeline` shows it (app/timelines.py), to draw."""
    p = view.patient
    sessions = [Booked(s["number"], s["id"], e["campaign"], s["starts_at"], s["duration_minutes"], s["status"],
                       s["external_id"]) for e in view.course for s in e["sessions"]]
    marks = [Mark(n, r.message.id, r.message.step_id, r.message.channel, r.message.status, r.why,
                  _moment(r.message), r.message.sent_at is not None, r.session_number)
             for n, r in enumerate(view.rows, 1)]
    return Course(p["id"], f"{p['first_name']} {p['last_name']}", p["external_id"], p["timezone"], view.now,
                  sessions, marks, list(view.notes))


def timeline_page(view: timelines.Timeline) -> str:
    """`dripcare timeline PATIENT --html FILE`: the patient's course as a picture."""
    return draw_course(course_of_view(view))


def draw_course(course: Course) -> str:
    mrn = f", MRN {course.external_id}" if course.external_id else ""
    title = f"{course.name} (patient {course.patient_id}{mrn})"
    counts = {s: sum(m.status == s for m in course.marks) for s in STATE_COLOURS}
    legend = _legend([(f"{s} ({n})", STATE_COLOURS[s], s in NOT_SENT) for s, n in counts.items() if n])
    body = [f"<h1>Course of {escape(title)}</h1>",
            f'<p class="meta">Times in the patient\'s zone, {escape(course.timezone)}. '
            f"Drawn {escape(when(course.now, course.timezone))}. "
            f"{len(course.sessions)} sessions, {len(course.marks)} messages.</p>"]
    body += [f'<p class="note">note: {escape(note)}</p>' for note in course.notes]
    if not course.marks and not course.sessions:
        body.append("<p>No sessions and no messages yet.</p>")
    else:
        body += [legend, CourseChart(course).svg(), "<h2>Messages</h2>", _marks_table(course),
                 "<h2>Sessions</h2>", _sessions_table(course)]
    body.append('<p class="note">This page holds patient information: keep it as you keep the chart.</p>')
    return page(f"Course of {title}", "\n".join(body))


class CourseChart:
    """Sessions as vertical bands across the chart, one row per message below them, each
    mark labelled with its step, channel, local time, state and the reason it was not sent."""

    WIDTH, LEFT, RIGHT, ROW, HEAD = 1100, 16, 16, 20, 48

    def __init__(self, course: Course):
        self.course = course
        self.tz = zone(course.timezone)
        instants = [m.at for m in course.marks] + [s.starts_at for s in course.sessions] + [course.now]
        first = min(instants).astimezone(self.tz).date()
        last = max(instants).astimezone(self.tz).date() + timedelta(days=1)
        self.start, self.end = self._midnight(first), self._midnight(last)
        self.label_rows = self._session_label_rows()
        self.top = self.HEAD + 16 * len(self.label_rows)
        self.height = self.top + self.ROW * max(len(course.marks), 1) + 12
        self.labels = [self._label_at(self.x(m.at), m.label(course.timezone)) for m in course.marks]
        # A label that fits on neither side of its mark widens the picture rather than being cut.
        self.canvas = max([self.WIDTH] + [x + text_width(t) + self.RIGHT for x, anchor, t in self.labels
                                          if anchor == "start"])

    def _label_at(self, x: float, label: str) -> tuple[float, str, str]:
        if x + 12 + text_width(label) <= self.WIDTH - self.RIGHT or x - 12 - text_width(label) < self.LEFT:
            return x + 12, "start", label
        return x - 12, "end", label

    def _midnight(self, day: date) -> datetime:
        return resolve_wall(datetime.combine(day, time()), self.tz)

    def x(self, instant: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1
        inner = self.WIDTH - self.LEFT - self.RIGHT
        return self.LEFT + inner * (instant - self.start).total_seconds() / span

    def svg(self) -> str:
        parts = [f'<svg viewBox="0 0 {self.canvas:.0f} {self.height}" width="{self.canvas:.0f}" '
                 f'height="{self.height}" role="img" aria-label="timeline of sessions and messages">']
        parts += self._axis() + self._sessions() + self._now() + self._marks()
        return "\n".join(parts + ["</svg>"])

    def _ticks(self) -> list[date]:
        days = (self.end - self.start).days or 1
        per_day = (self.WIDTH - self.LEFT - self.RIGHT) / days
        step = next((s for s in (1, 2, 7, 14, 28) if s * per_day >= 72), 56)
        first = self.start.astimezone(self.tz).date()
        if step >= 7:
            first += timedelta(days=(7 - first.weekday()) % 7)  # Mondays
        return [first + timedelta(days=d) for d in range(0, days + 1, step)]

    def _axis(self) -> list[str]:
        bottom = self.height - 8
        parts = [f'<line x1="{self.LEFT}" y1="{self.HEAD - 14}" x2="{self.WIDTH - self.RIGHT}" '
                 f'y2="{self.HEAD - 14}" stroke="#718096"/>']
        for day in self._ticks():
            x = self.x(self._midnight(day))
            parts.append(f'<line x1="{x:.1f}" y1="{self.HEAD - 18}" x2="{x:.1f}" y2="{bottom}" stroke="#edf2f7"/>')
            parts.append(_text(x + 2, self.HEAD - 20, f"{day:%a} {day.day} {day:%b}", "small"))
        return parts

    def _session_label_rows(self) -> list[list[tuple[float, float]]]:
        """Session labels stacked in rows so that none overlaps another."""
        rows: list[list[tuple[float, float]]] = []
        self.session_row: dict[int, int] = {}
        for s in self.course.sessions:
            x, width = self.x(s.starts_at), text_width(self._session_label(s)) + 8
            row = next((i for i, taken in enumerate(rows) if all(x >= b or x + width <= a for a, b in taken)), None)
            if row is None:
                rows.append([])
                row = len(rows) - 1
            rows[row].append((x, x + width))
            self.session_row[s.id] = row
        return rows

    def _session_label(self, s: Booked) -> str:
        local = s.starts_at.astimezone(self.tz)
        return f"session #{s.number} · {local:%a} {local.day} {local:%b %H:%M} · {s.status}"

    def _sessions(self) -> list[str]:
        parts = []
        for s in self.course.sessions:
            x, colour = self.x(s.starts_at), SESSION_COLOURS.get(s.status, "#718096")
            width = max(self.x(s.starts_at + timedelta(minutes=s.duration_minutes)) - x, 3)
            y = self.HEAD + 16 * self.session_row[s.id]
            dash = ' stroke-dasharray="4 3"' if s.status in ("cancelled", "no_show") else ""
            parts.append(f'<rect x="{x:.1f}" y="{self.top - 4}" width="{width:.1f}" height="{self.height - self.top}" '
                         f'fill="{colour}" fill-opacity="0.15"/>')
            parts.append(f'<line x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{self.height - 8}" stroke="{colour}" '
                         f'stroke-width="1.5"{dash}/>')
            parts.append(f'<circle cx="{x:.1f}" cy="{y - 4}" r="4" fill="{colour}"/>')
            parts.append(_text(x + 7, y, self._session_label(s)))
        return parts

    def _now(self) -> list[str]:
        x = self.x(self.course.now)
        return [f'<line x1="{x:.1f}" y1="{self.HEAD - 14}" x2="{x:.1f}" y2="{self.height - 8}" stroke="#e53e3e" '
                f'stroke-dasharray="2 3"/>', _text(x, self.HEAD - 30, "now", "small", "middle")]

    def _marks(self) -> list[str]:
        parts = []
        for i, (m, (label_x, anchor, label)) in enumerate(zip(self.course.marks, self.labels)):
            x, y = self.x(m.at), self.top + self.ROW * i + self.ROW / 2
            colour = STATE_COLOURS.get(m.status, "#718096")
            fill, number_cls = ("#fff", "small") if m.status in NOT_SENT else (colour, "mark")
            parts.append(f'<g><title>{escape(f"message {m.message_id}: {label}")}</title>'
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{fill}" stroke="{colour}" stroke-width="2"/>'
                         + _text(x, y + 3, str(m.number), number_cls, "middle")
                         + _text(label_x, y + 4, label, None, anchor) + "</g>")
        return parts


def _marks_table(course: Course) -> str:
    rows = "".join(
        f"<tr><td class='n'>{m.number}</td><td class='n'>{m.message_id}</td>"
        f"<td class='nw'>{escape(when(m.at, course.timezone))}</td><td class='nw'>{escape(m.step)}</td>"
        f"<td>{escape(m.channel)}</td><td>{f'#{m.session}' if m.session else ''}</td>"
        f"<td class='nw'>{_swatch(STATE_COLOURS.get(m.status, '#718096'), m.status in NOT_SENT)}"
        f"{escape(m.status)}</td>"
        f"<td>{escape(reason_text(m.why))}</td></tr>" for m in course.marks)
    return ("<table><tr><th class='n'>#</th><th class='n'>message</th><th>sent, or due</th><th>step</th>"
            f"<th>channel</th><th>session</th><th>state</th><th>why</th></tr>{rows}</table>")


def _sessions_table(course: Course) -> str:
    rows = "".join(
        f"<tr><td>#{s.number}</td><td class='n'>{s.id}</td>"
        f"<td class='nw'>{escape(when(s.starts_at, course.timezone))}</td>"
        f"<td class='n'>{s.duration_minutes} min</td><td>{escape(s.campaign)}</td>"
        f"<td>{_swatch(SESSION_COLOURS.get(s.status, '#718096'))}{escape(s.status)}</td>"
        f"<td>{escape(s.external_id or '')}</td></tr>" for s in course.sessions)
    return ("<table><tr><th>#</th><th class='n'>session</th><th>starts</th><th class='n'>length</th>"
            f"<th>campaign</th><th>status</th><th>EHR appointment</th></tr>{rows}</table>")


# --- the clinic's sending: the report page -------------------------------------------------------

def report_page(document: dict, clinic_name: str) -> str:
    """`dripcare report --html FILE`: the report's counts as charts, the numbers beside them."""
    since, until = document["since"][:10], document["until"][:10]
    scope = f" in campaign {document['campaign']}" if document.get("campaign") else ""
    body = [f"<h1>{escape(clinic_name)}: how messages fared</h1>",
            f'<p class="meta">From {escape(since)} to {escape(until)}{escape(scope)}. '
            f"Counts only: no patient data.</p>",
            "<h2>Messages by step and channel</h2>", _message_chart(document),
            "<h2>Delivery rate</h2>", _delivery_chart(document["deliverability"]),
            "<h2>Opt-outs by source over time</h2>", _opt_out_chart(document["opt_outs_over_time"],
                                                                     document["opt_outs"]),
            "<h2>Replies by kind</h2>", _bars(document["replies"], REPLY_COLOURS),
            "<h2>Failures by reason</h2>", _failures(document["failures"])]
    return page(f"{clinic_name} report {since} to {until}", "\n".join(body))


def _column_colour(column: str) -> str:
    return PLANNED_COLOUR if column == "planned" else STATE_COLOURS[S(column)]


def _stacked_bar(row: dict, columns: tuple[str, ...], scale: float, width: int = 240) -> str:
    parts, x = [], 0.0
    for column in columns:
        w = row[column] * scale
        if w > 0:
            hollow = column in NOT_SENT
            colour = _column_colour(column)
            parts.append(f'<rect x="{x:.1f}" y="1" width="{w:.1f}" height="12" fill="{"#fff" if hollow else colour}" '
                         f'stroke="{colour}"><title>{escape(column)}: {row[column]}</title></rect>')
            x += w
    return f'<svg viewBox="0 0 {width} 14" width="{width}" height="14">{"".join(parts)}</svg>'


def _message_chart(d: dict) -> str:
    if not d["messages"]:
        return "<p>No messages in this window.</p>"
    columns = tuple(d["totals"])
    biggest = max(sum(m[c] for c in columns) for m in d["messages"]) or 1
    campaigns = list(dict.fromkeys(m["campaign"] for m in d["messages"]))
    parts = [_legend([(c, _column_colour(c), c in NOT_SENT) for c in columns])]
    for campaign in campaigns:
        rows = [m for m in d["messages"] if m["campaign"] == campaign]
        parts.append(f"<h3>Campaign {escape(campaign)}</h3>" + _step_table(rows, columns, 240 / biggest))
    if len(campaigns) > 1:
        parts.append("<p><b>All campaigns:</b> " + ", ".join(f"{d['totals'][c]} {escape(c)}" for c in columns)
                     + "</p>")
    return "\n".join(parts)


def _step_table(rows: list[dict], columns: tuple[str, ...], scale: float) -> str:
    head = "".join(f"<th class='n'>{escape(c)}</th>" for c in columns)
    body = []
    for m in rows:
        numbers = "".join(f"<td class='n'>{m[c]}</td>" for c in columns)
        rate = "" if m["rate"] is None else f"{m['rate']:.1%}"
        body.append(f"<tr><td>{escape(m['step'])}</td><td>{escape(m['channel'])}</td>"
                    f"<td>{_stacked_bar(m, columns, scale)}</td>{numbers}<td class='n'>{rate}</td></tr>")
    totals = "".join(f"<td class='n'><b>{sum(m[c] for m in rows)}</b></td>" for c in columns)
    return (f"<table><tr><th>step</th><th>channel</th><th></th>{head}<th class='n'>delivery rate</th></tr>"
            f"{''.join(body)}<tr><td><b>total</b></td><td></td><td></td>{totals}<td></td></tr></table>")


def _delivery_chart(deliverability: dict) -> str:
    rows = []
    for channel, c in deliverability.items():
        if c["rate"] is None:
            bar, words = "", "no delivery reports (only status callbacks report delivery)"
        else:
            bar = (f'<svg viewBox="0 0 240 14" width="240" height="14"><rect x="0" y="1" width="240" height="12" '
                   f'fill="#edf2f7"/><rect x="0" y="1" width="{240 * c["rate"]:.1f}" height="12" '
                   f'fill="{STATE_COLOURS[S.DELIVERED]}"/></svg>')
            words = f"{c['rate']:.1%}"
        rows.append(f"<tr><td>{escape(channel)}</td><td>{bar}</td><td>{escape(words)}</td>"
                    f"<td class='n'>{c['delivered']}</td><td class='n'>{c['undelivered']}</td>"
                    f"<td class='n'>{c['failed']}</td></tr>")
    return ("<table><tr><th>channel</th><th></th><th>rate</th><th class='n'>delivered</th>"
            f"<th class='n'>undelivered</th><th class='n'>failed</th></tr>{''.join(rows)}</table>")


def _opt_out_chart(over_time: dict, totals: dict) -> str:
    periods, sources = over_time["periods"], list(totals)
    width, height, left, bottom = 720, 180, 30, 150
    biggest = max([sum(p[s] for s in sources) for p in periods] + [1])
    step = (width - left - 10) / max(len(periods), 1)
    parts = [f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#718096"/>',
             _text(left - 4, bottom, "0", "small", "end"), _text(left - 4, 18, str(biggest), "small", "end")]
    every = max(1, round(60 / step))
    for i, p in enumerate(periods):
        x, y = left + i * step + 1, float(bottom)
        for source in sources:
            h = (bottom - 14) * p[source] / biggest
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                             f'fill="{SOURCE_COLOURS.get(source, "#718096")}"><title>{escape(p["start"])} '
                             f'{escape(source)}: {p[source]}</title></rect>')
        if i % every == 0:
            parts.append(_text(x, bottom + 14, p["start"][5:], "small"))
    unit = "week from" if over_time["unit"] == "week" else "day"
    chart = (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="opt-outs per {escape(over_time["unit"])} by source">{"".join(parts)}</svg>')
    legend = "".join(f"<tr><td>{_swatch(SOURCE_COLOURS.get(s, '#718096'))}{escape(s)}</td>"
                     f"<td class='n'>{n}</td></tr>" for s, n in totals.items())
    return (f'<p class="note">One column per {unit} (month-day), stacked by who or what withdrew consent.</p>'
            f"<table><tr><td>{chart}</td><td><table><tr><th>source</th><th class='n'>opt-outs</th></tr>{legend}"
            f"<tr><td><b>total</b></td><td class='n'><b>{sum(totals.values())}</b></td></tr></table></td></tr></table>")


def _bars(counts: dict[str, int], colours: dict[str, str]) -> str:
    biggest = max(list(counts.values()) + [1])
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td><svg viewBox='0 0 240 14' width='240' height='14'><rect x='0' y='1' "
        f"width='{240 * n / biggest:.1f}' height='12' fill='{colours.get(k, '#718096')}'/></svg></td>"
        f"<td class='n'>{n}</td></tr>" for k, n in counts.items())
    return f"<table><tr><th>kind</th><th></th><th class='n'>count</th></tr>{rows}</table>"


def _failures(failures: dict[str, int]) -> str:
    if not failures:
        return "<p>None.</p>"
    rows = "".join(f"<tr><td>{escape(reason_text(r))}</td><td class='n'>{n}</td></tr>" for r, n in failures.items())
    return f"<table><tr><th>reason</th><th class='n'>messages</th></tr>{rows}</table>"
