"""What a patient's reply is taken as: keywords, plain requests to stop, crisis words."""

import pytest

from dripcare.domain.replies import (
    CRISIS_PHRASES,
    OPT_OUT_KEYWORDS,
    OPT_OUT_PHRASES,
    TAKEN_AS,
    classify,
    keyword,
)


@pytest.mark.parametrize("text", sorted(OPT_OUT_KEYWORDS))
def test_every_opt_out_keyword_in_any_case(text):
    assert classify(text) == classify(text.upper()) == classify(text.title()) == "opt_out"


@pytest.mark.parametrize("text", ["STOP", " stop ", "Stop.", "S T O P", "s.t.o.p!", "stop all", "STOP-ALL",
                                  "Opt out", "opt-out", "OPT_OUT", "un subscribe", "Cancel!!", "quit\n"])
def test_case_spaces_and_punctuation_are_ignored_in_keywords(text):
    assert classify(text) == "opt_out"


@pytest.mark.parametrize("text", ["START", "start", "Yes", "YES!", "unstop", "Un-Stop"])
def test_opt_in_keywords(text):
    assert classify(text) == "opt_in"


@pytest.mark.parametrize("text", ["HELP", "help?", "Info", "INFO."])
def test_help_keywords(text):
    assert classify(text) == "help"


@pytest.mark.parametrize("phrase", OPT_OUT_PHRASES)
def test_every_listed_phrase_is_an_opt_out_alone_and_in_a_sentence(phrase):
    assert classify(phrase) == "opt_out"
    assert classify(f"Hi, {phrase.capitalize()}. Thanks!") == "opt_out"


@pytest.mark.parametrize("text", [
    "please stop texting me", "Please STOP texting me!!", "No more texts", "no more texts please",
    "opt me out", "Take me off this list.", "unsubscribe me", "stop sending me messages", "Please stop",
    "stop please", "I'm not sure why I get these, please stop texting me", "I want you to stop texting me",
    "Don\u2019t text me anymore",
])
def test_plain_requests_to_stop(text):
    assert classify(text) == "opt_out"


@pytest.mark.parametrize("text", [
    "don't stop the reminders", "Do not stop", "please don't stop texting me, it helps",
    "I don't want you to stop texting me", "dont ever stop sending me messages", "I do not want to opt out",
    "I'll stop by the clinic at noon", "Can I stop my medication before the session?", "the end",
    "yes I can make it at 10", "I need help finding the parking", "starting to feel better", "stopped",
    "Can you help?", "", "   ",
])
def test_sentences_that_are_not_opt_outs(text):
    assert classify(text) == "reply"


@pytest.mark.parametrize("text", [
    "I think about suicide", "feeling suicidal", "I want to kill myself", "I want to die", "I might hurt myself",
    "I'm not safe tonight", "I want to end my life", "SUICIDE",
    "pienso en el suicidio", "quiero matarme", "quiero morir", "tengo ganas de hacerme daño",
    "tengo ganas de hacerme dano", "no estoy a salvo", "quiero quitarme la vida", "Quiero Morir.",
])
def test_words_of_crisis_in_english_and_spanish(text):
    assert classify(text) == "crisis"


@pytest.mark.parametrize("phrase", CRISIS_PHRASES)
def test_every_listed_crisis_phrase(phrase):
    assert classify(f"honestly {phrase} today") == "crisis"


def test_crisis_outranks_everything_but_an_exact_opt_out_keyword():
    assert classify("HELP I want to die") == "crisis"
    assert classify("please stop texting me, I want to die") == "crisis"
    assert classify("yes, suicidal") == "crisis"
    assert classify("STOP") == "opt_out"


def test_crisis_words_match_whole_words_only():
    assert classify("this is a safe place, not safety advice") == "reply"
    assert classify("my kill myselfie joke") == "reply"


def test_keyword_normal_form():
    assert keyword("  S.t-o p! ") == "stop"
    assert keyword("Désinscrire") == "desinscrire"


def test_every_answer_is_one_of_the_taken_as_words():
    for text in ("STOP", "START", "HELP", "suicide", "hello"):
        assert classify(text) in TAKEN_AS
