"""JSON from outside: the nesting limit (checked before parsing) and storable text."""

from __future__ import annotations

import json

import pytest
from conftest import server_address

from ghl_real_estate_ai.payloads import MAX_JSON_DEPTH, JSONDepthError, check_depth, loads, make_storable


def test_depth_limit_counts_nesting_not_brackets_in_strings() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads(at_limit) is not None
    with pytest.raises(JSONDepthError, match=str(MAX_JSON_DEPTH)):
        loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    # Brackets inside strings (escaped quotes too) are text, not nesting.
    text = json.dumps({"a": "[{" * 500 + '\\"[[['})
    assert loads(text)["a"].startswith("[{")
    # Many siblings are not depth.
    assert len(loads("[" + ",".join(["[]"] * 5000) + "]")) == 5000


def test_a_deep_document_is_refused_before_json_recurses() -> None:
    with pytest.raises(JSONDepthError):
        check_depth(b'{"x":' * 100_000 + b"1" + b"}" * 100_000)


def test_make_storable_removes_nul_and_replaces_lone_surrogates_and_says_where() -> None:
    value = json.loads('{"body": "a\\u0000b", "k\\u0000": ["ok", "\\udc80"], "n": 1, "e": "\\ud83d\\ude00"}')
    cleaned, changed = make_storable(value)
    assert cleaned == {"body": "ab", "k": ["ok", "\ufffd"], "n": 1, "e": "\U0001f600"}
    assert changed == ["body", "k", "k[1]"]
    json.dumps(cleaned, ensure_ascii=False).encode("utf-8")  # encodable now
    same = {"a": ["b"]}
    assert make_storable(same) == (same, []) and make_storable(same)[0] is same


def test_the_server_probe_reads_host_and_port_from_the_test_urls() -> None:
    assert server_address("postgresql://u:p@db.internal:6543/test", 5432) == ("db.internal", 6543)
    assert server_address("redis://10.0.0.7/1", 6379) == ("10.0.0.7", 6379)
