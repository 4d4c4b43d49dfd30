"""jsontext writes what the standard library's json writes, value for value and error for error."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghl_real_estate_ai import jsontext

_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),  # lone surrogates included
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(st.text(), children, max_size=5),
        st.dictionaries(st.integers(), children, max_size=3),  # keys json turns into text
    ),
    max_leaves=20,
)


def _outcome(call: Any, value: Any) -> tuple[str, Any]:
    try:
        return ("value", call(value))
    except (TypeError, ValueError) as exc:
        return ("error", type(exc))


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (json reads ``NaN`` back as a float NaN)."""
    return json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)


def _same_text(got: tuple[str, Any], expected: tuple[str, Any], value: Any) -> None:
    """The same error, or text that reads back to the same values (the same text without floats)."""
    assert got[0] == expected[0]
    if got[0] == "error":
        assert got[1] is expected[1]
        return
    assert _same(json.loads(got[1]), json.loads(expected[1]))
    if not _has_float(value):  # floats may be written otherwise: orjson writes 1e-08 as 1e-8
        # orjson's UTF-8 text, or json's ASCII text with escapes
        assert got[1] in (expected[1], json.dumps(json.loads(expected[1]), separators=(",", ":")))


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return isinstance(value, list | tuple) and any(_has_float(v) for v in value)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_dumps_is_compact_json(value: Any) -> None:
    _same_text(_outcome(jsontext.dumps, value), _outcome(lambda v: json.dumps(v, **_COMPACT), value), value)
    _same_text(
        _outcome(jsontext.dumps_finite, value),
        _outcome(lambda v: json.dumps(v, allow_nan=False, **_COMPACT), value),
        value,
    )


def test_non_finite_floats_as_json_writes_them() -> None:
    assert jsontext.dumps({"x": math.nan, "y": [math.inf]}) == '{"x":NaN,"y":[Infinity]}'
    with pytest.raises(ValueError, match="Out of range float values"):
        jsontext.dumps_finite({"x": math.nan})
    with pytest.raises(ValueError):
        jsontext.dumps_finite(["a", None, -math.inf])
    assert jsontext.dumps_finite(["a", None, 1]) == '["a",null,1]'


def test_what_orjson_refuses_goes_to_json() -> None:
    assert jsontext.dumps([2**64, -(2**70)]) == "[18446744073709551616,-1180591620717411303424]"
    assert jsontext.dumps({"text": "a\ud800b"}) == '{"text":"a\\ud800b"}'  # escaped: storable text
    assert jsontext.dumps({"text": "ñ\ud800"}) == '{"text":"\\u00f1\\ud800"}'
    assert jsontext.dumps({"text": "ñ"}) == '{"text":"ñ"}'
    assert jsontext.dumps({1: "one", None: 2}) == '{"1":"one","null":2}'
    assert jsontext.dumps_finite(("flat", None, True, 7)) == '["flat",null,true,7]'


class _Stage(StrEnum):
    NEW = "new"


@dataclasses.dataclass
class _Point:
    x: int


def test_what_json_refuses_stays_refused() -> None:
    with pytest.raises(TypeError):
        jsontext.dumps({"at": datetime.now(UTC)})
    with pytest.raises(TypeError):
        jsontext.dumps([_Point(1)])
    with pytest.raises(TypeError):
        jsontext.dumps({1, 2})
    assert jsontext.dumps({"stage": _Stage.NEW}) == '{"stage":"new"}'  # a str subclass is a str
    assert jsontext.dumps({"é": "ñ"}) == '{"é":"ñ"}'


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), ZoneInfo("America/Chicago")]),
    )
)
def test_iso_utc_is_isoformat_in_utc(moment: datetime) -> None:
    assert jsontext.iso_utc(moment) == moment.astimezone(UTC).isoformat(timespec="microseconds")
    on_the_second = moment.replace(microsecond=0)
    assert jsontext.iso_utc(on_the_second) == on_the_second.astimezone(UTC).isoformat(timespec="microseconds")
