"""What a patient's reply is taken as (SPEC 8 "Reading a reply"): the tables of what each
rule must catch and must not, in English and Spanish. tests/acceptance/test_web_replies.py
sends the same tables through signed HTTP to the web process."""

import pytest

from dripcare.domain.replies import (
    HELP_KEYWORDS,
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    TAKEN_AS,
    compile_pattern,
    keyword,
    read,
    starts,
    words,
)

# Requests to stop, as people write them (FCC 2024: revocation by any reasonable means).
OPT_OUTS = [
    # carrier keywords: case, spaces, punctuation and emoji ignored
    "STOP", "stop", " Stop. ", "S.T.O.P!", "STOP \U0001f6d1", "\U0001f6d1 stop \U0001f6d1", "StopAll", "stop all",
    "UNSUBSCRIBE", "Cancel", "END", "quit", "Revoke", "OPTOUT", "opt-out", "Opt out",
    # plain requests
    "Please stop sending these", "Please stop texting me", "I said STOP", "stop, thank you", "Stop please",
    "unsubscribe please", "Please unsubscribe me", "wrong number stop", "Wrong number, stop",
    "You have the wrong number", "No more texts", "no more messages please", "Stop sending me messages",
    "stop the reminders", "Stop these texts!!", "opt me out", "Take me off this list",
    "remove me from your list", "Don\u2019t text me anymore", "do not message me", "Don't send me any more texts",
    "I don't want these texts anymore", "I no longer want to receive these messages", "STOP STOP STOP",
    "Stop it", "leave me alone", "Ok stop", "Quit texting me", "not interested", "I want to stop",
    "not sure why I get these, please stop texting me",
    # Spanish
    "ALTO", "Alto por favor", "alto, gracias", "PARAR", "Baja", "CANCELAR", "no más mensajes",
    "No mas mensajes por favor", "Ya no me manden mensajes", "Dejen de enviarme mensajes",
    "deje de mandarme mensajes", "No me escriban más", "Quiero darme de baja", "número equivocado",
    "Paren los mensajes", "no quiero recibir mensajes", "Basta de mensajes", "dije ALTO",
    "Sáquenme de su lista", "No, dejen de enviarme mensajes",
]

# Words of crisis: a miss costs far more than a false alarm.
CRISES = [
    "I think about suicide", "feeling suicidal", "I want to kill myself", "kms", "I want to die",
    "i just wanna die", "I'd be better off dead", "I want to end it all", "I don't want to live anymore",
    "I might hurt myself", "thinking about self harm", "self-harm again", "I took all my pills",
    "I took too many pills", "overdose", "I think I overdosed", "I'm not safe", "I feel unsafe", "I am in danger",
    "I want to end my life", "HELP I am not safe", "cant go on like this",
    "Me quiero matar", "quiero suicidarme", "no quiero vivir", "Ya no quiero vivir", "tengo ganas de hacerme daño",
    "quiero hacerme dano", "quiero quitarme la vida", "no me siento segura", "No me siento seguro en casa",
    "me tomé todas las pastillas", "pienso en el suicidio", "quiero morir", "Me quiero morir",
    "estaría mejor muerta", "sobredosis", "ya no puedo más",
]

# Ordinary replies: neither an opt-out nor a crisis.
NEITHER = [
    "don't stop the reminders", "Please don't stop texting me, it helps", "I don't want you to stop texting me",
    "dont ever stop sending me messages", "I do not want to opt out", "I don't want the texts to stop",
    "I'll stop by the clinic at noon", "Can I stop my medication before the session?",
    "What time should I stop eating?", "the end", "What does the link at the end of the text mean?",
    "Can I cancel via text?", "I need to cancel my appointment on Friday", "I took my pills this morning",
    "Is it safe to drive the next day?", "I feel safe and much better, thank you", "thanks for the reminder!",
    "yes I can make it at 10", "Who is this?", "I'm dying to know how the next session goes",
    "Stopped at the pharmacy, running late", "Killing time in the waiting room", "I can't stop smiling today",
    "¿A qué hora es mi cita?", "No estoy segura de la hora", "Estoy de baja esta semana, ¿puedo ir el lunes?",
    "Tomé mis pastillas", "No dejen de enviarme los recordatorios", "Gracias por los mensajes", "",
]


@pytest.mark.parametrize("text", OPT_OUTS)
def test_requests_to_stop_are_opt_outs(text):
    reading = read(text)
    assert (reading.taken_as, reading.opt_out) == ("opt_out", True)


@pytest.mark.parametrize("text", CRISES)
def test_words_of_crisis_are_urgent(text):
    reading = read(text)
    assert (reading.taken_as, reading.urgent) == ("crisis", True)


@pytest.mark.parametrize("text", NEITHER)
def test_ordinary_replies_are_neither(text):
    reading = read(text)
    assert reading.taken_as in ("reply", "opt_in", "help") and not reading.opt_out and not reading.urgent


def test_the_tables_are_as_large_as_spec_asks():
    assert len(OPT_OUTS) >= 30 and len(CRISES) >= 20 and len(NEITHER) >= 15
    assert sum(any(c in t.lower() for c in "áéíóúñ") or t.split()[0].lower() in ("alto", "parar", "baja")
               for t in OPT_OUTS) >= 5


@pytest.mark.parametrize("text", sorted(OPT_OUT_KEYWORDS))
def test_every_opt_out_keyword_in_any_case(text):
    assert {read(v).taken_as for v in (text, text.upper(), text.title(), f" {text}! ")} == {"opt_out"}


@pytest.mark.parametrize("text", sorted(OPT_IN_KEYWORDS) + ["SÍ", "Sí.", "Un-Stop", "YES!"])
def test_opt_in_keywords(text):
    assert read(text).taken_as == "opt_in"


@pytest.mark.parametrize("text", sorted(HELP_KEYWORDS) + ["help?", "INFO.", "Ayuda!"])
def test_help_keywords(text):
    assert read(text).taken_as == "help"


@pytest.mark.parametrize("text", ["yes I can make it at 10", "I need help finding the parking",
                                  "starting to feel better", "si puedo a las 10", "Can you help?"])
def test_opt_in_and_help_are_keywords_alone(text):
    assert read(text).taken_as == "reply"


@pytest.mark.parametrize("text", ["STOP texting me I want to die", "please stop texting me, I want to die",
                                  "ALTO, me quiero matar", "Stop. I'm not safe"])
def test_a_crisis_that_asks_to_stop_is_both(text):
    reading = read(text)
    assert (reading.taken_as, reading.urgent, reading.opt_out) == ("crisis", True, True)


def test_a_crisis_alone_revokes_nothing():
    assert not read("I want to end it all").opt_out
    assert not read("HELP I am not safe").opt_out


def test_crisis_words_match_whole_words_only():
    assert read("this is a safe place, not safety advice").taken_as == "reply"
    assert read("my kill myselfie joke").taken_as == "reply"


def test_keyword_normal_form():
    assert keyword("  S.t-o p! \U0001f6d1") == "stop"
    assert keyword("Désinscrire") == "desinscrire"
    assert words("¿No, don't STOP?") == ["no", "dont", "stop"]


def test_patterns_stems_gaps_and_small_word_gaps():
    assert starts(compile_pattern("suicid*"), ["i", "feel", "suicidal"]) == [2]
    assert starts(compile_pattern("want ~2 die"), ["i", "want", "to", "die"]) == [1]
    assert starts(compile_pattern("stop _3 {messages}"), "stop sending me these texts".split()) == [0]
    assert starts(compile_pattern("stop _3 {messages}"), "stop thinking about the texts".split()) == []


def test_every_answer_is_one_of_the_taken_as_words():
    for text in OPT_OUTS + CRISES + NEITHER:
        assert read(text).taken_as in TAKEN_AS
