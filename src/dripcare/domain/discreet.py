"""The discreet check (SPEC 4): does an SMS name the treatment, the drug, the condition
or the clinic's specialty? One matcher for `templates check` and the moment of sending.

Case and accents are ignored on both sides ("psiquiátrico" in the list catches
"PSIQUIATRICO" in a text and the other way round). Terms match as whole words with their
plural and gendered forms ("infusion" catches "infusions", "psiquiátrico" catches
"psiquiatricas"); a term ending in `*` is a stem ("psychedel*" catches "psychedelics");
a term of several words matches those words in a row ("mental health").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+")


def plain_words(text: str) -> list[str]:
    """Lower case, accents dropped, split into words: what both sides are compared as."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return _WORD.findall("".join(c for c in decomposed if not unicodedata.combining(c)))


def word_forms(word: str) -> frozenset[str]:
    """A word with its plural and (Spanish) gendered forms."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith(("o", "a")):  # psiquiátrico / psiquiátrica, ansioso / ansiosa
        stem = word[:-1]
        forms |= {stem + "o", stem + "a", stem + "os", stem + "as"}
    if word.endswith("or"):  # tratador / tratadora
        forms |= {word + "a", word + "as"}
    if word.endswith("ion"):  # disociación / disociaciones (accents already dropped)
        forms.add(word + "es")
    if word.endswith("z"):  # a Spanish plural: luz / luces
        forms.add(word[:-1] + "ces")
    return frozenset(forms)


@dataclass(frozen=True)
class _Term:
    listed: str  # as written in sensitive_terms.txt, for the error line
    words: tuple[frozenset[str], ...]  # the forms each word may take
    stem: str | None  # the last word is a stem: any word starting with it

    def at(self, words: list[str], i: int) -> bool:
        n = len(self.words) + (1 if self.stem is not None else 0)
        if i + n > len(words):
            return False
        if any(words[i + k] not in forms for k, forms in enumerate(self.words)):
            return False
        return self.stem is None or words[i + len(self.words)].startswith(self.stem)

    def may_be_in(self, present: set[str]) -> bool:
        """A cheap first look: is its first word (or stem) in the text at all?"""
        if self.words:
            return not self.words[0].isdisjoint(present)
        return any(word.startswith(self.stem) for word in present)


def _term(listed: str) -> _Term | None:
    text = listed.strip()
    stem = text.endswith("*")
    words = plain_words(text.rstrip("*"))
    if not words:
        return None
    if stem:
        return _Term(listed, tuple(word_forms(w) for w in words[:-1]), words[-1])
    return _Term(listed, tuple(word_forms(w) for w in words), None)


class SensitiveTerms:
    """The clinic's list, ready to search texts with."""

    def __init__(self, listed: Iterable[str]):
        self.listed = [t.strip() for t in listed if t.strip()]
        self._terms = [t for t in map(_term, self.listed) if t is not None]

    def __bool__(self) -> bool:
        return bool(self._terms)

    def found(self, text: str) -> list[str]:
        """The listed terms `text` names, in list order."""
        words = plain_words(text)
        present = set(words)
        return [t.listed for t in self._terms
                if t.may_be_in(present) and any(t.at(words, i) for i in range(len(words)))]


def parse_terms(text: str) -> list[str]:
    """sensitive_terms.txt: one term per line; `#` starts a comment."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]
