"""Language: whether a lead writes English or Spanish, so the bots answer in it.

`lingua` tells the two apart, restricted to English and Spanish in its
low-accuracy mode (trigram models only: about 12 MB and 20 µs a message; the
high-accuracy models cost over 120 MB for the same two languages). A message
decides only when it says enough to go on:

- numbers, amounts, shorthand with digits ("3bd", "450k") and the place names
  the message mentions are taken out first (place names are Spanish all over
  California: "rancho cucamonga" must not make an English lead Spanish);
- what is left must hold at least two words of letters, and one language must
  reach :data:`DECISIVE` probability. "ok", "si", "👍", "650k" decide nothing.

The conversation's language (:func:`conversation_language`) is the one most of
its deciding messages were written in, the first one breaking a tie: a
Spanglish line in a Spanish conversation does not switch the replies to
English, nor a closing "muchas gracias" an English one to Spanish.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingua import LanguageDetector

__all__ = ["DECISIVE", "LANGUAGES", "conversation_language", "language_of", "message_language"]

LANGUAGES: tuple[str, ...] = ("en", "es")
"""The languages the bots read and answer in (ISO 639-1)."""
DECISIVE = 0.9
"""A message is in a language when the detector gives it this probability or more."""

_WORD = re.compile(r"[^\W\d_]{2,}")
_WITH_DIGITS = re.compile(r"\S*\d\S*")


@functools.cache
def _detector() -> LanguageDetector:
    from lingua import Language, LanguageDetectorBuilder

    return (
        LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.SPANISH)
        .with_low_accuracy_mode()
        .with_preloaded_language_models()
        .build()
    )


def language_of(text: str, places: Sequence[str] = ()) -> str | None:
    """``"en"``/``"es"`` when ``text`` clearly is in that language, else ``None``.

    Args:
        text: one message as the lead wrote it.
        places: place names found in it (taken out before deciding).
    """
    from lingua import Language

    rest = _WITH_DIGITS.sub(" ", text.lower())
    for place in places:
        for word in place.lower().split():
            rest = re.sub(rf"\b{re.escape(word)}\b", " ", rest)
    words = _WORD.findall(rest)
    if len(words) < 2:
        return None
    spanish = _detector().compute_language_confidence(" ".join(words), Language.SPANISH)
    if spanish >= DECISIVE:
        return "es"
    if spanish <= 1.0 - DECISIVE:
        return "en"
    return None


_READ_CHARS = 1000
"""How much of a message decides its language (its start says it as well as the whole)."""


def message_language(text: str) -> str | None:
    """:func:`language_of` one message, with the places the gazetteer finds in it taken out.

    Cached (at most 1,024 texts of at most 1,000 characters): the bots decide the reply
    language from the whole conversation before reading its newest message, so each text
    is asked about again.
    """
    return _message_language(text[:_READ_CHARS])


@functools.lru_cache(maxsize=1024)
def _message_language(text: str) -> str | None:
    from ghl_real_estate_ai.understanding.places import find_places

    return language_of(text, find_places(text))


def conversation_language(decided: Iterable[str | None]) -> str | None:
    """The language most deciding messages were in (the first one breaks a tie); ``None`` if none decided.

    Args:
        decided: each message's :func:`language_of`, oldest first.
    """
    counts: dict[str, int] = {}
    for language in decided:
        if language is not None:
            counts[language] = counts.get(language, 0) + 1
    if not counts:
        return None
    # dicts keep insertion order, and max() keeps the first of equals: the earliest language wins a tie.
    return max(counts, key=counts.__getitem__)


def warm_up() -> None:
    """Load the detector's models now (start-up), not at the first message."""
    _detector()
