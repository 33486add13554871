"""What dripcare texts back to a reply (SPEC 3.2 [sms], 8), in the patient's locale: the
clinic's `[sms.<locale>]` texts, else its `[sms]` ones.

- keyword replies (opt-out, opt-in, help) only when `keyword_replies` is true (false when
  Twilio Advanced Opt-Out answers them itself);
- the crisis reply always, leading with the emergency number and the crisis line: a
  clinic text that lacks them near its start gets them put in front;
- the unmonitored reply to anything else.
A crisis that asks to stop gets the crisis reply, then the opt-out reply.
"""

from __future__ import annotations

import logging

from dripcare.delivery.templates import TemplateError
from dripcare.domain.replies import Reading

log = logging.getLogger("dripcare.inbox")

KEYWORD_TEXTS = {"opt_out": "opt_out_reply", "opt_in": "opt_in_reply", "help": "help_reply"}
LEAD_WITHIN = 160  # characters: the first screen (one GSM-7 segment) of the crisis reply

# Said when the clinic's text is missing what a patient in crisis must be given, or cannot
# be rendered: English, and the languages we ship a wording for.
CRISIS_LEAD = {
    "en": "If you are in danger now, call {emergency}. Call or text {line} any time, day or night.",
    "es": "Si está en peligro ahora, llame al {emergency}. Llame o envíe un mensaje al {line} a cualquier hora.",
}
UNMONITORED_FALLBACK = {
    "en": "{name}: this number is not monitored. Call {phone}.",
    "es": "{name}: este número no se atiende. Llame al {phone}.",
}


def answers_for(rt, reading: Reading, locale: str) -> list[str]:
    """The texts to send back, in order (none when keyword replies are off)."""
    clinic = rt.clinic
    texts: list[str] = []
    if reading.taken_as == "crisis":
        texts.append(crisis_reply(rt, locale))
        if reading.opt_out and clinic.keyword_replies:
            texts += _rendered(rt, "opt_out_reply", locale)
    elif reading.taken_as in KEYWORD_TEXTS:
        if clinic.keyword_replies:
            texts += _rendered(rt, KEYWORD_TEXTS[reading.taken_as], locale)
    else:
        texts += _rendered(rt, "unmonitored_reply", locale) or [_wording(UNMONITORED_FALLBACK, locale).format(
            name=clinic.sms_name, phone=clinic.phone)]
    return texts


def crisis_reply(rt, locale: str) -> str:
    clinic = rt.clinic
    lead = _wording(CRISIS_LEAD, locale).format(emergency=clinic.emergency_number, line=clinic.crisis_line)
    rendered = _rendered(rt, "crisis_reply", locale)
    if not rendered:
        return lead
    text = rendered[0]
    start = text[:LEAD_WITHIN]
    if clinic.emergency_number in start and clinic.crisis_line in start:
        return text
    return f"{lead} {text}"


def _rendered(rt, key: str, locale: str) -> list[str]:
    """The clinic's text for `key` in the locale, rendered; none when it cannot be (logged)."""
    try:
        text = rt.templates.render_text(rt.clinic.sms_text(key, locale), {})
    except TemplateError as error:
        log.error("clinic.toml %s (locale %s) cannot be rendered: %s", key, locale, error)
        return []
    return [text] if text.strip() else []


def _wording(table: dict[str, str], locale: str) -> str:
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return table.get(language, table["en"])
