"""Shared text helpers: pattern building, negation scope, number words."""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from ghl_real_estate_ai.understanding.normalise import fold

_norm = fold


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_NEGATORS = frozenset(
    {
        "not", "no", "dont", "don't", "never", "isn't", "isnt", "aren't", "arent", "haven't", "havent",
        "hasn't", "hasnt", "won't", "wont", "didn't", "didnt", "doesn't", "doesnt", "without", "nor",
        "neither", "nunca", "ni", "wasn't", "wasnt", "weren't", "werent", "ain't", "aint", "cancel",
        "cancelled", "canceled", "cancelar",
    }
)  # fmt: skip
_CLAUSE_BREAK = re.compile(r"[.!?;,:\n]|\bbut\b|\bpero\b|\bhowever\b|\bthough\b")
# These contain a negator but do not negate what follows ("no idea what my home is worth").
_NON_NEGATING = re.compile(
    r"\bno (?:idea|clue)\b|\bnot sure (?:what|how|if it)\b|\bno matter\b|\b(?:don't|dont|do not|didn't|didnt) know\b"
)


_LETTERS = re.compile(r"[a-z']+")


def _negated(text: str, start: int, window: int = 4) -> bool:
    # The clause a negator must share with the phrase is short: looking back a bounded stretch keeps
    # a long message linear (a check per match over the whole head would be quadratic).
    head = text[max(0, start - 160) : start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    if breaks:
        head = head[breaks[-1].end() :]
    if may_match(_NON_NEGATING, head):
        head = _NON_NEGATING.sub(" ", head)
    words = _LETTERS.findall(head)[-window:]
    return any(w in _NEGATORS for w in words)


def _affirmed(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``text`` that is not negated."""
    if not may_match(pattern, text):
        return None
    found = None
    for match in pattern.finditer(text):
        if not _negated(text, match.start()):
            found = match
    return found


# Ruling a pattern out before running it: most phrase tables find nothing in most messages, and a
# pattern that starts with ``\b`` and an alternation is tried at every position of the text, while
# looking for a few fixed strings is a fast scan. Every match of a pattern contains one of its
# needles, so a text holding none of them has no match, and skipping the pattern changes nothing.
_sre: Any = importlib.import_module("re._parser")
_sre_const: Any = importlib.import_module("re._constants")
_ZERO_WIDTH = frozenset({_sre_const.AT, _sre_const.ASSERT, _sre_const.ASSERT_NOT})
_ANY_DIGIT = "\x00any digit"
"""A needle no text holds: where a pattern's needles include it, a text that is not ASCII may match."""
_REPEATS = frozenset({_sre_const.MAX_REPEAT, _sre_const.MIN_REPEAT, _sre_const.POSSESSIVE_REPEAT})


def _best(options: list[frozenset[str]]) -> frozenset[str] | None:
    """The most selective of several needle sets each of which every match must hit."""
    if not options:
        return None
    return max(options, key=lambda needles: (min(map(len, needles)), -len(needles)))


def _characters(items: Any) -> frozenset[str] | None:
    """The characters a small class (``\\d``, ``[$.]``, ``[0-9]``) matches, one needle each."""
    chars: set[str] = set()
    for op, av in items:
        if op is _sre_const.LITERAL:
            chars.add(chr(av))
        elif op is _sre_const.RANGE and av[1] - av[0] < 10:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        elif op is _sre_const.CATEGORY and av is _sre_const.CATEGORY_DIGIT:
            # Any Unicode digit: the ten ASCII ones stand for them in ASCII text, and
            # may_match lets every other text through (the _ANY_DIGIT needle).
            chars.update("0123456789")
            chars.add(_ANY_DIGIT)
        else:
            return None
    return frozenset(chars) if 0 < len(chars - {_ANY_DIGIT}) <= 10 else None


def _required(items: Any) -> frozenset[str] | None:
    """Strings one of which every match of the parsed sequence ``items`` contains (``None``: unknown)."""
    options: list[frozenset[str]] = []
    run = ""
    for op, av in items:
        if op is _sre_const.LITERAL:
            run += chr(av)
            continue
        if op in _ZERO_WIDTH:
            continue  # consumes nothing: the characters either side of it are adjacent in the match
        if run:
            options.append(frozenset({run}))
            run = ""
        found: frozenset[str] | None = None
        if op is _sre_const.SUBPATTERN:
            _group, add_flags, _del_flags, sub = av
            if not add_flags & re.IGNORECASE:
                found = _required(sub.data)
        elif op is _sre_const.BRANCH:
            branches = [_required(branch.data) for branch in av[1]]
            if all(b is not None for b in branches):
                found = frozenset().union(*(b for b in branches if b is not None))
        elif op in _REPEATS and av[0] >= 1:
            found = _required(av[2].data)
        elif op is _sre_const.IN:
            found = _characters(av)
        if found and "" not in found:
            options.append(found)
    if run:
        options.append(frozenset({run}))
    return _best(options)


def needles(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Fixed strings one of which every match of ``pattern`` contains; ``None`` when there are none."""
    if pattern.flags & re.IGNORECASE:
        return None
    found = _required(_sre.parse(pattern.pattern, pattern.flags).data)
    if not found:
        return None
    # One needle inside another makes the longer one redundant: the shorter is found wherever it is.
    kept = [
        n
        for n in found
        if n == _ANY_DIGIT or not any(other not in (n, _ANY_DIGIT) and other in n for other in found)
    ]
    return tuple(sorted(kept))


_NEEDLES: dict[re.Pattern[str], tuple[str | re.Pattern[str], bool] | None] = {}


def _needle_check(pattern: re.Pattern[str]) -> tuple[str | re.Pattern[str], bool] | None:
    """How :func:`may_match` looks for the needles of ``pattern``: one needle as a string, several
    as one alternation of them (its search finds one wherever any of them is, in a single pass
    the regex engine speeds up by their first characters); and whether non-ASCII text must pass."""
    strings = needles(pattern)
    if strings is None:
        return None
    fixed = [n for n in strings if n != _ANY_DIGIT]
    check: str | re.Pattern[str] = (
        fixed[0] if len(fixed) == 1 else re.compile("|".join(map(re.escape, fixed)))
    )
    return check, _ANY_DIGIT in strings


def may_match(pattern: re.Pattern[str], text: str) -> bool:
    """False only when ``pattern`` certainly finds nothing in ``text`` (a cheap scan for its needles)."""
    try:
        found = _NEEDLES[pattern]
    except KeyError:
        found = _NEEDLES[pattern] = _needle_check(pattern)
    return _holds_needle(found, text)


def _holds_needle(found: tuple[str | re.Pattern[str], bool] | None, text: str) -> bool:
    """False only when ``text`` holds none of the needles ``found`` (None: no needles, may match)."""
    if found is None:
        return True
    check, any_digit = found
    if any_digit and not text.isascii():
        return True  # ``\d`` matches any Unicode digit, which no ASCII needle stands for
    if isinstance(check, str):
        return check in text
    return check.search(text) is not None


_TABLES: dict[int, tuple[object, tuple[str | re.Pattern[str], bool] | None]] = {}


def _table_check(table: Sequence[tuple[Any, Any]]) -> tuple[str | re.Pattern[str], bool] | None:
    fixed: set[str] = set()
    any_digit = False
    for row in table:
        pattern = row[0] if isinstance(row[0], re.Pattern) else row[1]
        strings = needles(pattern)
        if strings is None:
            return None  # this one may match anything: the table must be run
        fixed.update(n for n in strings if n != _ANY_DIGIT)
        any_digit = any_digit or _ANY_DIGIT in strings
    ordered = sorted(fixed)
    check: str | re.Pattern[str] = (
        ordered[0] if len(ordered) == 1 else re.compile("|".join(map(re.escape, ordered)))
    )
    return check, any_digit


def table_may_match(table: Sequence[tuple[Any, Any]], text: str) -> bool:
    """False only when no pattern of a phrase table (rows of a name or value and a pattern, in either
    order) can match ``text``: one look for all their needles instead of one per pattern."""
    cached = _TABLES.get(id(table))
    if cached is None or cached[0] is not table:
        cached = _TABLES[id(table)] = (table, _table_check(table))
    found = cached[1]
    return _holds_needle(found, text)


def finditer(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, skipped when :func:`may_match` rules it out."""
    return pattern.finditer(text) if may_match(pattern, text) else iter(())


def search(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """``pattern.search(text)``, skipped when :func:`may_match` rules it out."""
    return pattern.search(text) if may_match(pattern, text) else None


_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple": 2, "a couple of": 2,
    "couple": 2, "couple of": 2, "a few": 3, "few": 3, "several": 4, "uno": 1, "una": 1, "dos": 2,
    "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "un": 1,
}  # fmt: skip
_NUM = r"\d+(?:\.\d+)?|a couple(?: of)?|couple(?: of)?|a few|few|several|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|uno|una|un|dos|tres|cuatro|cinco|seis"


def _number(word: str) -> float | None:
    word = word.strip()
    if word in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[word])
    try:
        return float(word.replace(",", ""))
    except ValueError:
        return None
