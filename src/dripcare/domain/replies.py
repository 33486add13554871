"""What a patient's SMS reply is taken as (SPEC 8 `/twilio/inbound`): pure, no I/O.

Keywords are whole-text matches, as carriers and Twilio treat them: "STOP" is an
opt-out, "please don't stop" is not. Plain requests to stop come from a short, tested
phrase list rather than a substring match on "stop", and a negation just before a
phrase ("don't stop texting me") cancels it. Words of crisis are looked for anywhere in
the text, because a missed one costs far more than a false alarm.
"""

from __future__ import annotations

import re
import unicodedata

TAKEN_AS = ("opt_out", "opt_in", "help", "crisis", "reply")

OPT_OUT_KEYWORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
OPT_IN_KEYWORDS = frozenset({"start", "yes", "unstop"})
HELP_KEYWORDS = frozenset({"help", "info"})

# Matched as whole words anywhere in the text, unless a negation comes just before.
OPT_OUT_PHRASES = (
    "stop texting me", "stop texting", "stop sending me messages", "stop sending messages",
    "stop sending me texts", "stop sending texts", "stop messaging me", "stop the texts",
    "stop these texts", "stop the messages", "stop these messages", "no more texts",
    "no more messages", "no more text messages", "opt me out", "opt out", "take me off this list",
    "take me off the list", "take me off your list", "remove me from this list",
    "remove me from the list", "remove me from your list", "unsubscribe me", "dont text me",
    "do not text me", "dont message me", "do not message me",
)
# Matched only as the whole text: inside a longer sentence these are too ambiguous.
OPT_OUT_WHOLE = frozenset({"please stop", "stop please", "stop it", "stop now", "stop stop"})
NEGATIONS = frozenset({"dont", "do not", "never", "not", "didnt", "did not", "doesnt", "does not",
                       "wont", "will not", "cant", "cannot", "shouldnt", "should not", "no need to"})
# Words that may sit between a negation and the phrase it cancels: "don't ever stop
# texting me", "I don't want you to stop texting me". Anything else ends the look-back,
# so "not sure, please stop texting me" stays an opt-out.
FILLERS = frozenset({"please", "pls", "ever", "you", "just", "to", "want", "wanna", "need", "ya", "u"})

CRISIS_PHRASES = (
    # English
    "suicide", "suicidal", "kill myself", "killing myself", "want to die", "wanna die",
    "hurt myself", "hurting myself", "not safe", "end my life", "ending my life",
    # Spanish, matched without accents too ("hacerme dano")
    "suicidio", "suicida", "matarme", "quiero morir", "quiero morirme", "hacerme dano",
    "no estoy a salvo", "quitarme la vida",
)

_APOSTROPHES = str.maketrans({"'": "", "\u2019": "", "\u2018": "", "`": "", "\u00b4": ""})


def _plain(text: str) -> str:
    """Lower case, accents dropped (so "daño" and "dano" both match), apostrophes removed
    (so "don't" and "dont" are one word)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_APOSTROPHES))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def keyword(text: str) -> str:
    """The text with case, spaces and punctuation ignored: "S.T.O.P!" -> "stop"."""
    return "".join(c for c in _plain(text) if c.isalnum())


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", _plain(text))


def _find(phrase: str, tokens: list[str]) -> list[int]:
    """Where `phrase` starts as whole words in `tokens`."""
    target = phrase.split()
    size = len(target)
    return [i for i in range(len(tokens) - size + 1) if tokens[i:i + size] == target]


def _negated(tokens: list[str], start: int) -> bool:
    end = start
    while end > 0 and tokens[end - 1] in FILLERS:
        end -= 1
    return any(" ".join(tokens[max(0, end - n):end]) in NEGATIONS for n in (1, 2, 3))


def is_crisis(text: str) -> bool:
    tokens = words(text)
    return any(_find(phrase, tokens) for phrase in CRISIS_PHRASES)


def is_opt_out_request(text: str) -> bool:
    """A plain-language request to stop: from the phrase list, and not negated."""
    tokens = words(text)
    if " ".join(tokens) in OPT_OUT_WHOLE:
        return True
    for phrase in OPT_OUT_PHRASES:
        if any(not _negated(tokens, start) for start in _find(phrase, tokens)):
            return True
    return False


def classify(text: str) -> str:
    """One of TAKEN_AS. An exact opt-out keyword always wins (a carrier treats it as one
    whatever we think); otherwise crisis words come before anything else."""
    word = keyword(text)
    if word in OPT_OUT_KEYWORDS:
        return "opt_out"
    if is_crisis(text):
        return "crisis"
    if word in OPT_IN_KEYWORDS:
        return "opt_in"
    if word in HELP_KEYWORDS:
        return "help"
    if is_opt_out_request(text):
        return "opt_out"
    return "reply"
