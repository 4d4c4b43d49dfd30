"""Normalisation: the one spelling every later step reads.

Leads text in lowercase or capitals, with or without accents, with shorthand
("prolly", "gonna", "b4", "u", "unsub") and emoji. :func:`fold` gives the plain
form (lowercase, no accents, straight quotes, no emoji, single spaces);
:func:`normalise` also spells the texting shorthand out, so "we r gonna sell b4
summer" and "We are going to sell before summer" read the same.

Both are pure functions of the text and cheap (a few microseconds): every
message goes through them once.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["SHORTHAND", "fold", "normalise", "strip_emoji"]

SHORTHAND: dict[str, str] = {
    # English texting
    "prolly": "probably",
    "prob": "probably",
    "prly": "probably",
    "probly": "probably",
    "gonna": "going to",
    "gunna": "going to",
    "wanna": "want to",
    "gotta": "got to",
    "tryna": "trying to",
    "lemme": "let me",
    "gimme": "give me",
    "kinda": "kind of",
    "b4": "before",
    "yrs": "years",
    "yr": "year",
    "mos": "months",
    "wks": "weeks",
    "wk": "week",
    "hrs": "hours",
    "u": "you",
    "ur": "your",
    "r": "are",
    "n": "and",
    "w/": "with",
    "w/o": "without",
    "bc": "because",
    "cuz": "because",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "ty": "thank you",
    "rn": "right now",
    "idk": "i don't know",
    "txt": "text",
    "txts": "texts",
    "txting": "texting",
    "msg": "message",
    "msgs": "messages",
    "unsub": "unsubscribe",
    "im": "i'm",
    "ive": "i've",
    "dont": "don't",
    "cant": "can't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "isnt": "isn't",
    "wont": "won't",
    "whats": "what's",
    "thats": "that's",
    "theres": "there's",
    "lookin": "looking",
    "tho": "though",
    "thru": "through",
    "bout": "about",
    "abt": "about",
    "approx": "approximately",
    "govt": "government",
    "asap": "as soon as possible",
    # Spanish texting
    "q": "que",
    "xq": "porque",
    "pq": "porque",
    "tmb": "tambien",
    "pa": "para",
    "nomas": "no mas",
}
"""Texting shorthand and the words it stands for (all lowercase, accents dropped).

Only unambiguous forms are here: "4" (for) and "2" (to) are left alone because
they are far more often numbers ("4 bedrooms", "2 baths")."""

_SHORTHAND_KEYS = SHORTHAND.keys()
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'"})
# A token is a run of letters/digits, possibly with inner apostrophes or a "/" ("w/").
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?/?(?:[a-z]+)?")


def _is_emoji(ch: str) -> bool:
    if ch in "\u200d\ufe0f\ufe0e\u20e3":
        return True
    category = unicodedata.category(ch)
    return category == "So" or (category == "Sk" and 0x1F3FB <= ord(ch) <= 0x1F3FF)


def strip_emoji(text: str) -> str:
    """``text`` without emoji, symbols and their modifiers (each replaced by a space)."""
    if text.isascii():
        return text
    return "".join(" " if _is_emoji(ch) else ch for ch in text)


@functools.lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Lowercase, straight quotes, no accents, no emoji, single spaces."""
    text = strip_emoji(text.translate(_QUOTES))
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
        text = text.replace("\u00bf", " ").replace("\u00a1", " ")
    return " ".join(text.lower().split())


def _expand(match: re.Match[str]) -> str:
    word = match.group()
    return SHORTHAND.get(word, word)


@functools.lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """:func:`fold`, then texting shorthand spelled out ("b4" -> "before")."""
    folded = fold(text)
    if _SHORTHAND_KEYS.isdisjoint(_TOKEN.findall(folded)):
        return folded  # nothing to spell out: the substitution would give the same text
    return _TOKEN.sub(_expand, folded)
