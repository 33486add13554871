"""Unsubscribe tokens: a link from an email unsubscribes that patient, and nothing else does."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dripcare.domain.unsubscribe import make_token, read_token, unsubscribe_url

KEY, OLD_KEY = "current-secret-key", "previous-secret-key"


def test_roundtrip():
    token = make_token(42, KEY)
    assert read_token(token, [KEY]) == 42
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token) and len(token) <= 30  # url-safe and compact


def test_a_token_from_the_old_key_still_works_after_rotation():
    assert read_token(make_token(42, OLD_KEY), [KEY, OLD_KEY]) == 42


def test_an_unknown_key_is_refused():
    assert read_token(make_token(42, "someone-else"), [KEY, OLD_KEY]) is None
    assert read_token(make_token(42, KEY), []) is None


@pytest.mark.parametrize("alter", [
    lambda t: t[:-1],  # truncated
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character changed
    lambda t: "43" + t[2:],  # another patient's id on this MAC
    lambda t: "042" + t[2:],  # the same id written differently
    lambda t: t.split(".")[0],  # no MAC
    lambda t: "." + t.split(".")[1],  # no id
    lambda t: t + "=",
    lambda t: "-42" + t[2:],
    lambda t: "４２" + t[2:],  # full-width digits
    lambda t: t.replace(".", ".\udcff"),  # what a bad URL escape decodes to
    lambda t: "9" * 5000 + t[2:],
    lambda t: "",
])
def test_altered_tokens_are_refused(alter):
    assert read_token(alter(make_token(42, KEY)), [KEY, OLD_KEY]) is None


@given(st.text(max_size=60))
def test_no_forged_token_is_accepted(text):
    assert read_token(text, [KEY]) is None or text == make_token(int(text.split(".")[0]), KEY)


def test_unsubscribe_url():
    url = unsubscribe_url("https://care.riverbend.example/", 7, KEY)
    assert url == f"https://care.riverbend.example/u/{make_token(7, KEY)}"


def test_a_key_is_required():
    with pytest.raises(ValueError):
        make_token(7, "")
