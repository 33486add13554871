"""The discreet matcher (SPEC 4): what a discreet patient's SMS must never name, matched
ignoring case and accents on both sides, as whole words with plural and gendered forms,
stems and multi-word terms; and what it must let through. The shipped list is the one
under test, so a term dropped from sensitive_terms.txt fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from dripcare.config.terms import load_sensitive_terms
from dripcare.domain.discreet import SensitiveTerms, parse_terms

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "dripcare" / "examples"
SHIPPED = load_sensitive_terms(EXAMPLES / "config")


@pytest.mark.parametrize(("text", "term"), [
    # plural forms
    ("Your infusions start Monday", "infusion"),
    ("Two ketamines", "ketamine"),
    ("Las infusiones empiezan el lunes", "infusión"),
    # gendered forms
    ("una evaluación psiquiátrica", "psiquiatr*"),
    ("PSIQUIATRICAS", "psiquiatr*"),
    ("se siente deprimida", "deprimido"),
    ("estrés postraumática", "postraumático"),
    # accents ignored on both sides: an accented term, a plain text and the other way round
    ("su infusion de mañana", "infusión"),
    ("su infusión de mañana", "infusión"),
    ("disociacion", "disociac*"),
    ("Ketamína", "ketamina"),
    # case
    ("KETAMINE tomorrow", "ketamine"),
    ("your Spravato visit", "spravato"),
    ("KETALAR", "ketalar"),
    # several words in a row, whatever the case, accents or punctuation between them
    ("our Mental  Health team", "mental health"),
    ("su equipo de Salud-Mental", "salud mental"),
    ("trastorno de estrés postraumático", "estrés postraumático"),
    ("your nasal spray", "nasal spray"),
    ("post-traumatic stress", "post traumatic"),
    # stems
    ("psychedelics", "psychedel*"),
    ("a psychedelic-assisted visit", "psychedel*"),
    ("dissociative effects", "dissociat*"),
    ("you may feel dissociated", "dissociat*"),
    ("your therapist", "therap*"),
    ("suicidal thoughts", "suicid*"),
    ("pensamientos suicidas", "suicid*"),
    # whole words inside longer text and next to punctuation
    ("(esketamine)", "esketamine"),
    ("IV.", "iv"),
    ("ptsd/tept", "ptsd"),
])
def test_listed_terms_are_caught_in_every_form(text, term):
    assert term in SHIPPED.found(text), (text, SHIPPED.found(text))


INNOCENT = [
    "Riverbend Clinic: see you tomorrow at 9:30 AM, Suite 210.",
    "Your session is on Friday. Bring your intentions and a list of your medicines.",
    "No food after 5:30 AM; clear fluids until 7:30 AM. No driving for the rest of the day.",
    "We check your blood pressure before and after.",
    "confusion, impression, expression, pressure, department, dramatic, transfusion",
    "health, mental, nasal, decongestant, spray, divine, five, Ivy, Ivan, dive",
    "associate, association, traumatology, ketchup, kettle",
    "If you feel unsafe, call or text 988 any time, day or night. In an emergency, call 911.",
    "Riverbend Clinic: le esperamos mañana a las 9:30. Calcule unas 2 horas con nosotros.",
    "sesión, presión, tensión, saludable, mentalidad, asociación, depósito, ansioso",
    "Si se siente en peligro, llame al 988 (oprima 2) a cualquier hora.",
    "Msg&data rates may apply. Msg frequency varies. Reply STOP to opt out, HELP for help.",
]


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_words_pass(text):
    assert SHIPPED.found(text) == []


def test_the_shipped_list_names_drug_brands_conditions_and_specialty_in_both_languages():
    for must in ("ketamine", "ketamina", "esketamine", "esketamina", "spravato", "ketalar", "mental health",
                 "salud mental", "psychiatr*", "psiquiatr*", "intranasal", "intramuscular", "infusion", "infusión",
                 "ptsd", "tept", "depression", "depresión", "anxiety", "ansiedad"):
        assert must in SHIPPED.listed, must


def test_a_term_list_reads_comments_and_blank_lines():
    terms = SensitiveTerms(parse_terms("# heading\n\nketamine   # the drug\n  Mental Health \n"))
    assert terms.listed == ["ketamine", "Mental Health"]
    assert terms.found("mental health and KETAMINE") == ["ketamine", "Mental Health"]


def test_an_empty_list_finds_nothing_and_says_so():
    terms = SensitiveTerms([])
    assert not terms and terms.found("ketamine") == []
