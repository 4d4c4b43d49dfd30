"""Patterns skipped by their needles (issue 14): a skipped pattern is one that could not have matched."""

from __future__ import annotations

import importlib
import re

import pytest

from ghl_real_estate_ai.understanding.dataset import load_split
from ghl_real_estate_ai.understanding.normalise import fold, normalise
from ghl_real_estate_ai.understanding.reading import objections_of, read_message
from ghl_real_estate_ai.understanding.text import may_match, needles

_MODULES = ("dates", "phrases", "quantities", "reading", "rules", "text", "places", "language")


def _shipped_patterns() -> list[re.Pattern[str]]:
    found: dict[str, re.Pattern[str]] = {}

    def visit(value: object) -> None:
        if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
            found[value.pattern] = value
        elif isinstance(value, tuple | list):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for name in _MODULES:
        for value in vars(importlib.import_module(f"ghl_real_estate_ai.understanding.{name}")).values():
            visit(value)
    return list(found.values())


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\bsell(?:ing)? my house\b", (" my house",)),  # the longest fixed run wins
        (r"\b(?:buy|purchase) now\b", (" now",)),
        (r"\b(?:buy|purchase)\b", ("buy", "purchase")),
        (r"\bsell(?:ing)?\b|\bvender\b", ("sell", "vender")),
        (r"(?:a|b)?c", ("c",)),
        (r"x?|y", None),  # matches the empty string: nothing is required
        (r"(?i:stop)", None),  # a case-insensitive part needs no particular spelling
        (r"[a-z]+", None),
        (r"(?<!tax )\bliens?\b", ("lien",)),  # what a look-behind asks for is not in the match
        (r"\d+ beds", (" beds",)),
    ],
)
def test_needles_are_what_every_match_contains(pattern: str, expected: tuple[str, ...] | None) -> None:
    assert needles(re.compile(pattern)) == expected


def test_ignorecase_pattern_is_never_skipped() -> None:
    pattern = re.compile(r"stop", re.IGNORECASE)
    assert needles(pattern) is None
    assert may_match(pattern, "STOP")


def test_a_digit_class_skips_ascii_text_without_digits_only() -> None:
    pattern = re.compile(r"\$?\d+")
    assert not may_match(pattern, "about five hundred")
    assert may_match(pattern, "450k")
    # Python's \d is any Unicode digit: text that is not ASCII is always run.
    assert pattern.search("\u0664\u0665 mil") is not None
    assert may_match(pattern, "\u0664\u0665 mil")


def test_no_shipped_pattern_is_skipped_where_it_matches() -> None:
    patterns = _shipped_patterns()
    assert len(patterns) > 100
    texts = [e.text for split in ("train", "test") for e in load_split(split)]
    checked = 0
    for text in texts:
        for form in {text, fold(text), normalise(text)}:
            for pattern in patterns:
                if pattern.search(form) is not None:
                    assert may_match(pattern, form), (pattern.pattern, form)
                    checked += 1
    assert checked > 5_000


def test_objections_of_is_the_reading_s() -> None:
    from datetime import date

    texts = [e.text for e in load_split("test")] + ["too expensive. just looking, not ready " * 200]
    for text in texts:
        assert objections_of(text) == read_message(text, today=date(2026, 3, 3)).objections
