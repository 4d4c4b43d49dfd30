"""JSON text and ISO times for the store's hot paths: orjson's speed, the standard library's text.

A webhook writes about 14 JSON documents, 10 rows of batched writes (each a JSON
array) and 34 times as text. orjson writes each in a fraction of the time the
standard library takes (measured on the bench machine, per webhook: 148 µs of times
against 46, 108 µs of JSON against 32). Where orjson would differ, the standard
library writes the text, so each function gives what its stdlib counterpart gives:

* ``NaN`` and the infinities, which orjson writes as ``null``: a document whose orjson
  text holds ``null`` is written again by ``json`` (``NaN``, or refused by
  :func:`dumps_finite`), unless it is a flat list or tuple without a float, where
  ``null`` can only be a ``None`` (the rows of the store's batched writes);
* what orjson refuses (a lone surrogate, an integer past 64 bits, a key that is not
  a ``str``): ``json``'s text or error;
* a ``datetime``, a dataclass or a ``str`` subclass, which orjson would write in its
  own way: ``json``'s text, or its ``TypeError``.

The text is compact. orjson's is UTF-8 as it is, ``json``'s is ASCII with escapes (a lone
surrogate, which orjson refuses, becomes ``\\ud800``, text any database takes). Both read
back to the same values; a float may be spelt otherwise (``5.96e-08`` or ``5.96e-8``).
Reading stays with ``json.loads``: for the store's few short texts orjson saves nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = ["dumps", "dumps_finite", "iso_utc"]

# Passed on to ``default`` (there is none, so orjson refuses them and json decides).
_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# ASCII text (``ensure_ascii``): a lone surrogate is written as its escape, which every
# database takes, never as itself, which no UTF-8 column does.
_STDLIB: Final = json.JSONEncoder(separators=(",", ":"))
_STDLIB_FINITE: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_orjson_dumps = orjson.dumps
_PLAIN: Final = frozenset((str, int, bool, type(None)))
_FLAT: Final = frozenset((list, tuple))
_EncodeError = orjson.JSONEncodeError


def dumps(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"))``, UTF-8 as it is where orjson wrote it."""
    return _dumps(value, _STDLIB)


def dumps_finite(value: Any) -> str:
    """:func:`dumps` with ``allow_nan=False``: a non-finite float is a ``ValueError``."""
    return _dumps(value, _STDLIB_FINITE)


def _dumps(value: Any, stdlib: json.JSONEncoder) -> str:
    try:
        out = _orjson_dumps(value, option=_OPTIONS)
    except _EncodeError:
        return stdlib.encode(value)
    if b"null" in out and not _flat_without_floats(value):  # None, or a float orjson wrote as null
        return stdlib.encode(value)
    return out.decode()


def _flat_without_floats(value: Any) -> bool:
    return type(value) in _FLAT and _PLAIN.issuperset(map(type, value))


def iso_utc(moment: datetime) -> str:
    """``moment.astimezone(UTC).isoformat(timespec="microseconds")``: fixed-width ISO text in UTC.

    An aware ``datetime`` of its own class (the common case) is written by orjson, whose
    text is the same whenever the microseconds are not 0; anything else by ``isoformat``.
    """
    utc = moment.astimezone(UTC)
    if type(utc) is datetime and utc.microsecond:
        return _orjson_dumps(utc)[1:-1].decode()
    return utc.isoformat(timespec="microseconds")
