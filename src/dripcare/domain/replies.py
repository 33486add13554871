"""What a patient's SMS reply is taken as (SPEC 8 "Reading a reply"): pure, no I/O.

What people write is what counts, in English and Spanish. Each rule is a tested list of
words and phrases matched as whole words, never a bare substring:

- opt-out: a carrier keyword (STOP, ALTO, ...) alone or with words of courtesy around it
  ("stop, thank you", "I said STOP", "wrong number stop"), or a plain request from the
  phrase lists ("please stop sending these", "no más mensajes"), unless a negation comes
  just before it ("don't stop the reminders"). Revocation by any reasonable means (FCC
  2024) is the bar, so the lists lean towards reading a request to stop as one;
- opt-in and help: the keyword alone (START, SÍ, HELP, AYUDA);
- crisis: words of suicide, self-harm, overdose or danger anywhere in the text, never
  cancelled by a negation: a missed one costs far more than a false alarm.

A reply can be a crisis and an opt-out at once ("STOP texting me I want to die"): both
are acted on.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

TAKEN_AS = ("opt_out", "opt_in", "help", "crisis", "reply")

# Carrier keywords: the whole text, case, spaces, punctuation and emoji ignored.
OPT_OUT_KEYWORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
                              "alto", "parar", "baja", "cancelar"})
OPT_IN_KEYWORDS = frozenset({"start", "yes", "unstop", "si", "comenzar"})
HELP_KEYWORDS = frozenset({"help", "info", "ayuda"})

# Words that ask to stop when the rest of the text is only courtesy ("stop please").
STOP_WORDS = OPT_OUT_KEYWORDS | {"unsub", "paren", "pare", "basta", "detener", "detengan", "cancelen"}
COURTESY = frozenset({
    "please", "pls", "plz", "thanks", "thank", "thx", "ty", "you", "u", "now", "ok", "okay", "k", "hi",
    "hello", "hey", "sorry", "just", "this", "all", "i", "said", "already", "again", "wrong", "number",
    "person", "im", "asked", "told", "so", "yes", "really", "seriously", "want", "wanna", "would", "like",
    "to", "id", "me", "sir", "maam", "immediately", "asap", "texts", "messages",
    "por", "favor", "porfa", "porfavor", "gracias", "ya", "hola", "dije", "numero", "equivocado",
    "equivocada", "oiga", "oye", "que", "todo", "todos", "mensajes", "quiero", "ahora",
})
# The whole text, courtesy aside, asks to stop.
WHOLE_REQUESTS = frozenset({"stop it", "quit it", "no more", "not interested", "enough", "no mas", "no me interesa"})

# Word classes used in the patterns below as {name}.
CLASSES = {
    "messages": "text texts txt txts message messages msg msgs sms reminder reminders notification "
                "notifications alert alerts subscription updates",
    "these": "these them",
    "sending": "texting txting messaging msging sending contacting spamming bothering pestering harassing "
               "emailing",
    "text_me": "text txt message msg contact sms bother spam",
    "mensajes": "mensajes mensaje msjs msj textos texto sms recordatorios recordatorio notificaciones "
                "avisos alertas",
    "enviar_me": "enviarme enviar mandarme mandar escribirme escribir textearme molestarme molestar "
                 "contactarme contactar",
    "me_envien": "manden mande envien envie escriban escriba molesten moleste contacten contacte texteen",
    # Short words a request to stop carries between its verb and its object ("stop
    # sending me all these texts"), so `_N` gaps never span "stop thinking about the texts".
    "small": "me us the this that these those all any my your our of more further future with such so many sending "
             "receiving getting to receive get mi mis los las el la sus su estos estas de mas nos todos "
             "todas tus",
    "harm": "kill killing kil killin hurt hurting harm harming cut cutting hang hanging shoot shooting "
            "poison poisoning drown drowning",
    "took": "took taken take taking swallowed swallow ate",
    "pills": "pills pill tablets meds medication medications medicine medicines",
    "die_wish": "want wanna wish ready going gonna deserve need planning",
    "pastillas": "pastillas pastilla pildoras medicinas medicamentos",
}

# A pattern is words separated by spaces: `a|b` is either word, `word*` a stem, `{class}`
# any word of the class, `~N` up to N words of anything, `_N` up to N {small} words.
OPT_OUT_EN = (
    "stop|quit|cease|cancel _3 {messages}",        # stop sending me texts, cancel these messages
    "stop|quit|cease|cancel {these}",              # stop these, stop them
    "stop|quit {sending}",                         # stop texting me, quit messaging
    "no more _2 {messages}|{these}",               # no more texts, no more of these
    "dont|never {text_me} me",                     # don't text me, never message me
    "do not {text_me} me",
    "dont|never send _3 {messages}",               # don't send me any more texts
    "do not send _3 {messages}",
    "unsubscribe|unsub", "opt _1 out", "optout",   # unsubscribe please, opt me out
    "remove|take me off|from _3 list|lists|{messages}|{these}",   # take me off this list
    "leave me alone",
    "wrong number|person",                         # wrong number, stop: not our patient
    "no longer want|wish|need ~3 {messages}|{these}|receive|receiving|get|getting",
)
OPT_OUT_ES = (
    "no mas _2 {mensajes}",                        # no más mensajes, no más de estos mensajes
    "ya no ~3 {mensajes}",                         # ya no me manden mensajes
    "no me {me_envien}",                           # no me manden más, no me escriban
    "dejen|deje|deja|dejar|dejes|dejad de {enviar_me}",   # dejen de enviarme mensajes
    "paren|pare|parar|detener|detengan|cancelar|cancelen|cancele _2 {mensajes}",
    "darme|dame|denme|deme|dar|darse|doy|den de baja",    # quiero darme de baja ("estoy de baja" is sick leave)
    "numero equivocado|incorrecto", "persona equivocada", "equivocaron de numero",
    "dejenme|dejame|dejeme en paz",
    "basta _2 {mensajes}",
    "quitar|quitenme|quiteme|sacar|saquenme|saqueme|borrar|borrenme|eliminar|eliminenme ~3 lista",
)
# These name what the patient does not want; "I don't want the texts to stop" must not
# count, so a stop word later in the text cancels them.
OPT_OUT_UNLESS_STOP_LATER = (
    "dont|not want|wanna _3 {messages}|{these}",   # I don't want these texts anymore
    "no quiero|deseo _2 {mensajes}|recibir",       # no quiero recibir mensajes
)
# A negation just before a request cancels it ("don't stop the reminders"). Words that may
# sit between ("don't ever stop texting me", "I don't want you to stop") are skipped; any
# other word or a punctuation mark ends the look-back, so "not sure, please stop texting
# me" and "No, dejen de enviarme mensajes" stay opt-outs.
NEGATIONS_EN = frozenset({"dont", "do not", "never", "not", "didnt", "did not", "doesnt", "does not", "wont",
                          "will not", "cant", "cannot", "shouldnt", "should not", "no need", "no need to"})
NEGATIONS_ES = frozenset({"no", "nunca", "jamas"})
FILLERS = frozenset({"please", "pls", "ever", "you", "u", "just", "to", "want", "wanna", "need", "ya",
                     "por", "favor", "que", "quiero", "me"})

CRISIS_EN = (
    "suicid*", "sucid*", "suicde", "kms", "killmyself",
    "{harm} myself|myslf|meself", "{harm} my self",
    "{die_wish} ~2 die",                           # want to die, wanna die, ready to die, want 2 die
    "better|rather|wish|want ~3 dead",             # better off dead, wish I was dead
    "better off without me",
    "end|ending|ended|take|taking my ~1 life",     # end my life, take my own life
    "end|ending it all", "end it tonight", "{die_wish} ~1 end it", "end everything",
    "dont|not want|wanna ~2 live|alive|exist|existing",   # don't want to live
    "dont|not want|wanna ~2 wake up",
    "no reason to live", "nothing to live for", "not worth living", "no point ~2 living",
    "cant go on", "cant do this anymore", "cant take it anymore", "cant take this anymore",
    "give|giving up on life", "self harm*", "selfharm*", "self injur*",
    "{took} all ~2 {pills}", "{took} too many ~1 {pills}", "{took} a|the whole ~2 {pills}|bottle",
    "{took} a bunch|handful|lot of ~1 {pills}", "overdos*", "over dose",
    "not safe", "unsafe", "dont|not feel|feeling safe", "in danger",
    "im|am not ok|okay", "kill|hurt someone|somebody|people",
    "goodbye forever", "final goodbye", "last goodbye",
)
CRISIS_ES = (
    "matarme", "me ~2 matar", "me mato",           # me quiero matar, me voy a matar
    "quiero|quisiera|deseo|voy ~2 morir|morirme",  # quiero morir, me quiero morir
    "mejor|quisiera|quiero|prefiero ~3 muerto|muerta",
    "no quiero ~2 vivir|viviendo|vivo|viva|existir|despertar",  # no quiero seguir viviendo
    "hacerme|hago ~1 dano|danio",                  # hacerme daño, me hago daño
    "lastimarme", "cortarme", "herirme", "autolesi*", "ahorcarme",
    "quitarme|quitar ~1 la|mi vida", "acabar|terminar|fin ~2 mi vida", "acabar|terminar con todo",
    "no me siento ~1 segur*", "no me siento ~1 a salvo", "no estoy a salvo", "en peligro",
    "sobredosis", "tome|tomado|trague|tomar ~2 todas|muchas|demasiadas ~2 {pastillas}",
    "ya no puedo mas", "no puedo mas", "no aguanto mas", "razon|razones|sentido ~2 vivir",
    "no estoy bien", "no vale la pena vivir",
)

_APOSTROPHES = str.maketrans({"'": "", "\u2019": "", "\u2018": "", "`": "", "\u00b4": ""})
BREAK = ","  # a punctuation mark between words, as a token: a negation does not reach across it


def _plain(text: str) -> str:
    """Lower case, accents dropped ("daño" and "dano" are one word), apostrophes removed
    ("don't" and "dont" are one word)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_APOSTROPHES))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def keyword(text: str) -> str:
    """The text with case, spaces, punctuation and emoji ignored: "S.T.O.P! \U0001f6d1" -> "stop"."""
    return "".join(c for c in _plain(text) if c.isalnum())


def tokens(text: str) -> list[str]:
    """Words, with BREAK where punctuation stood; emoji and symbols dropped."""
    return [BREAK if not t[0].isalnum() else t for t in re.findall(r"[^\W_]+|[.,;:!?\u00bf\u00a1]", _plain(text))]


def words(text: str) -> list[str]:
    return [t for t in tokens(text) if t != BREAK]


@dataclass(frozen=True)
class _Word:
    exact: frozenset[str]
    stems: tuple[str, ...]

    def accepts(self, token: str) -> bool:
        return token in self.exact or any(token.startswith(s) for s in self.stems)


@dataclass(frozen=True)
class _Gap:
    most: int
    only: _Word | None  # None: any word

    def accepts(self, token: str) -> bool:
        return self.only is None or self.only.accepts(token)


def _word(spec: str) -> _Word:
    names: list[str] = []
    for part in spec.split("|"):
        names += CLASSES[part[1:-1]].split() if part.startswith("{") else [part]
    return _Word(frozenset(n for n in names if not n.endswith("*")),
                 tuple(n[:-1] for n in names if n.endswith("*")))


def compile_pattern(pattern: str) -> tuple:
    """Each part of a pattern as a `_Word` or a `_Gap`."""
    parts = []
    for part in pattern.split():
        if part[0] in "~_" and part[1:].isdigit():
            parts.append(_Gap(int(part[1:]), _word("{small}") if part[0] == "_" else None))
        else:
            parts.append(_word(part))
    return tuple(parts)


def _matches_at(parts: tuple, toks: list[str], i: int) -> bool:
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if isinstance(head, _Gap):
        for skip in range(head.most + 1):
            if _matches_at(rest, toks, i + skip):
                return True
            if i + skip >= len(toks) or not head.accepts(toks[i + skip]):
                return False
        return False
    return i < len(toks) and head.accepts(toks[i]) and _matches_at(rest, toks, i + 1)


def starts(parts: tuple, toks: list[str]) -> list[int]:
    """Where the pattern starts in `toks`, as whole words."""
    return [i for i in range(len(toks)) if _matches_at(parts, toks, i)]


def _negated(toks: list[str], start: int, negations: frozenset[str]) -> bool:
    end = start
    while True:
        if any(" ".join(toks[max(0, end - n):end]) in negations for n in (1, 2, 3)):
            return True
        if end == 0 or toks[end - 1] not in FILLERS:
            return False
        end -= 1


_REQUESTS = [(compile_pattern(p), NEGATIONS_EN) for p in OPT_OUT_EN] + \
            [(compile_pattern(p), NEGATIONS_ES) for p in OPT_OUT_ES]
_REQUESTS_UNLESS_STOP = [compile_pattern(p) for p in OPT_OUT_UNLESS_STOP_LATER]
_CRISIS = [compile_pattern(p) for p in (*CRISIS_EN, *CRISIS_ES)]
_STOP_LATER = _word("stop|end|cancel|quit|dejen|deje|dejar|paren|parar")


def is_crisis(text: str) -> bool:
    toks = words(text)
    return any(starts(pattern, toks) for pattern in _CRISIS)


def _courteous_stop(toks: list[str]) -> bool:
    """A sentence of stop words with only courtesy around them: "I said STOP", "stop, thank
    you", "Stop. I'm not safe"."""
    clauses = " ".join(toks).split(BREAK)
    rests = ([t for t in clause.split() if t not in COURTESY] for clause in clauses)
    return any(rest and all(t in STOP_WORDS for t in rest) for rest in rests)


def _whole_request(toks: list[str]) -> bool:
    return " ".join(t for t in toks if t not in COURTESY) in WHOLE_REQUESTS


def is_opt_out_request(text: str) -> bool:
    """A request to stop: a keyword alone or with courtesy, or a listed phrase not negated."""
    toks = tokens(text)
    plain = [t for t in toks if t != BREAK]
    if keyword(text) in OPT_OUT_KEYWORDS or _courteous_stop(toks) or _whole_request(plain):
        return True
    for pattern, negations in _REQUESTS:
        if any(not _negated(toks, i, negations) for i in starts(pattern, toks)):
            return True
    for pattern in _REQUESTS_UNLESS_STOP:
        if any(not any(_STOP_LATER.accepts(t) for t in toks[i + 2:]) for i in starts(pattern, toks)):
            return True
    return False


@dataclass(frozen=True)
class Reading:
    """What a reply asks for. `taken_as` is what the inbox shows (a crisis before the rest);
    `opt_out` also holds for a crisis that asks to stop, so both are acted on."""

    taken_as: str
    opt_out: bool = False

    @property
    def urgent(self) -> bool:
        return self.taken_as == "crisis"


def read(text: str) -> Reading:
    opt_out = is_opt_out_request(text)
    if is_crisis(text):
        return Reading("crisis", opt_out)
    if opt_out:
        return Reading("opt_out", True)
    word = keyword(text)
    if word in OPT_IN_KEYWORDS:
        return Reading("opt_in")
    if word in HELP_KEYWORDS:
        return Reading("help")
    return Reading("reply")
