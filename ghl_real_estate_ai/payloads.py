"""JSON from outside: a nesting limit checked before parsing, and text made storable.

Python's ``json`` module recurses once per nesting level, so a body nested a
few thousand levels deep raises ``RecursionError`` (a 500) instead of a clear
refusal; :func:`check_depth` scans the raw bytes first (strings skipped) and
:func:`loads` combines the two::

    try:
        data = loads(raw)                # JSONDepthError past MAX_JSON_DEPTH
    except JSONDepthError as exc:
        ...                              # answer 400 with str(exc)

Some text valid in JSON cannot be stored: PostgreSQL refuses NUL (``\\u0000``)
in ``TEXT`` and ``JSONB``, and a lone UTF-16 surrogate (``\\ud800``) is not
encodable as UTF-8 at all. :func:`make_storable` removes NUL and replaces lone
surrogates with U+FFFD in every key and string of a decoded value and reports
where it changed something, so the caller can record it instead of failing
on every delivery.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONDepthError", "check_depth", "loads", "make_storable"]

MAX_JSON_DEPTH = 64
"""Deepest array/object nesting accepted in a request body (GHL's webhooks nest 2-3 levels)."""

# One token per JSON string (skipped whole, escapes included) or bracket.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONDepthError(ValueError):
    """A JSON document nests deeper than the limit; the message names the limit."""


def check_depth(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON text nesting arrays/objects deeper than ``limit``, without parsing it.

    Args:
        raw: the JSON text (bytes are read as UTF-8-compatible; strings are skipped).
        limit: the deepest nesting allowed.

    Raises:
        JSONDepthError: the text nests deeper than ``limit``.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # cannot be deeper than the number of openers
    depth = 0
    for token in _TOKEN.finditer(data):
        first = token.group()[0]
        if first in _OPENERS:
            depth += 1
            if depth > limit:
                raise JSONDepthError(
                    f"JSON nested deeper than {limit} levels: flatten the document "
                    f"(the limit is {limit} nested arrays/objects)"
                )
        elif first != 0x22:  # a closing bracket
            depth = max(0, depth - 1)


def loads(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after :func:`check_depth`.

    Raises:
        JSONDepthError: nested deeper than ``limit``.
        ValueError: not JSON (``json.JSONDecodeError``, ``UnicodeDecodeError``).
    """
    check_depth(raw, limit)
    return json.loads(raw)


def _clean(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text)


def _needs_cleaning(text: str) -> bool:
    # A surrogate is not ASCII: the regular expression only runs on text that is not.
    return "\x00" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def _unstorable(value: Any) -> bool:
    """Whether any key or string in ``value`` needs cleaning (no copy, no path built)."""
    if isinstance(value, str):
        return _needs_cleaning(value)
    if isinstance(value, dict):
        return any(_needs_cleaning(key) or _unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unstorable(item) for item in value)
    return False


def make_storable(value: Any) -> tuple[Any, list[str]]:
    """Remove NUL and replace lone surrogates in every key and string of a decoded JSON value.

    Args:
        value: what ``json.loads`` returned.

    Returns:
        The cleaned value (the same object when nothing needed cleaning) and
        the dotted paths of the keys and strings that changed (``["body",
        "message.body"]``), empty when none did.
    """
    if not _unstorable(value):  # the common case: one look at each string, nothing rebuilt
        return value, []
    changed: list[str] = []
    cleaned = _walk(value, "", changed)
    return cleaned, changed


def _walk(value: Any, path: str, changed: list[str]) -> Any:
    if isinstance(value, str):
        if _needs_cleaning(value):
            changed.append(path or "(document)")
            return _clean(value)
        return value
    if isinstance(value, list):
        before = len(changed)
        items = [_walk(item, f"{path}[{i}]", changed) for i, item in enumerate(value)]
        return items if len(changed) > before else value
    if isinstance(value, dict):
        before = len(changed)
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key
            if _needs_cleaning(key):
                name = _clean(key)
                changed.append(f"{path}.{name}" if path else name)
            out[name] = _walk(item, f"{path}.{name}" if path else name, changed)
        return out if len(changed) > before else value
    return value
