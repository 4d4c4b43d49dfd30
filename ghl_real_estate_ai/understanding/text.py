"""Shared text helpers: pattern building, negation scope, number words."""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import re

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


def _negated(text: str, start: int, window: int = 4) -> bool:
    # The clause a negator must share with the phrase is short: looking back a bounded stretch keeps
    # a long message linear (a check per match over the whole head would be quadratic).
    head = text[max(0, start - 160) : start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    if breaks:
        head = head[breaks[-1].end() :]
    head = _NON_NEGATING.sub(" ", head)
    words = re.findall(r"[a-z']+", head)[-window:]
    return any(w in _NEGATORS for w in words)


def _affirmed(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``text`` that is not negated."""
    found = None
    for match in pattern.finditer(text):
        if not _negated(text, match.start()):
            found = match
    return found


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
