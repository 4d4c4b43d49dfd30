"""A checker for Jaeger's query API JSON, written from Jaeger's documented model.

Jaeger's ``/api/*`` answers use the ``ui`` model of ``jaeger/model/json``: a
trace has ``traceID``, ``spans``, ``processes`` and ``warnings``; a span has
``traceID``, ``spanID``, ``flags``, ``operationName``, ``references``
(``refType`` CHILD_OF or FOLLOWS_FROM), ``startTime`` and ``duration`` in
microseconds, ``tags``, ``logs``, ``processID`` and ``warnings``; a tag
(KeyValue) is ``{key, type, value}`` with type string, bool, int64, float64 or
binary; every answer is wrapped as ``{data, total, limit, offset, errors}``.
"""

from __future__ import annotations

import re
from typing import Any

_HEX = re.compile(r"^[0-9a-f]+$")
_TAG_TYPES = {"string": str, "bool": bool, "int64": int, "float64": (int, float), "binary": str}


def _check_keys(obj: Any, required: set[str], where: str) -> None:
    assert isinstance(obj, dict), f"{where}: expected an object, got {type(obj).__name__}"
    missing = required - obj.keys()
    assert not missing, f"{where}: missing {sorted(missing)}"


def _check_id(value: Any, length: int, where: str) -> None:
    assert isinstance(value, str) and _HEX.match(value), f"{where}: not lowercase hex: {value!r}"
    assert len(value) <= length, f"{where}: longer than {length}: {value!r}"


def check_keyvalue(tag: Any, where: str) -> None:
    """One KeyValue: string key, known type, value of that type."""
    _check_keys(tag, {"key", "type", "value"}, where)
    assert isinstance(tag["key"], str) and tag["key"], f"{where}: empty key"
    assert tag["type"] in _TAG_TYPES, f"{where}: unknown type {tag['type']!r}"
    expected = _TAG_TYPES[tag["type"]]
    value = tag["value"]
    if tag["type"] != "bool":
        assert not isinstance(value, bool), f"{where}: bool value for type {tag['type']}"
    assert isinstance(value, expected), f"{where}: value {value!r} is not {tag['type']}"


def check_trace(trace: Any) -> None:
    """One trace of the ui model, with every span, reference, tag, log and process."""
    _check_keys(trace, {"traceID", "spans", "processes"}, "trace")
    _check_id(trace["traceID"], 32, "trace.traceID")
    assert isinstance(trace["spans"], list) and trace["spans"], "trace.spans: empty"
    processes = trace["processes"]
    assert isinstance(processes, dict) and processes, "trace.processes: empty"
    for pid, process in processes.items():
        _check_keys(process, {"serviceName", "tags"}, f"process {pid}")
        assert isinstance(process["serviceName"], str) and process["serviceName"]
        for tag in process["tags"]:
            check_keyvalue(tag, f"process {pid} tag")
    span_ids = set()
    for span in trace["spans"]:
        where = f"span {span.get('spanID')!r}"
        _check_keys(
            span,
            {
                "traceID",
                "spanID",
                "operationName",
                "references",
                "startTime",
                "duration",
                "tags",
                "logs",
                "processID",
            },
            where,
        )
        assert span["traceID"] == trace["traceID"], f"{where}: traceID differs from the trace's"
        _check_id(span["spanID"], 16, f"{where}.spanID")
        span_ids.add(span["spanID"])
        assert isinstance(span["operationName"], str)
        for name in ("startTime", "duration"):
            assert isinstance(span[name], int) and not isinstance(span[name], bool) and span[name] >= 0
        assert span["startTime"] > 10**15, f"{where}: startTime is not in microseconds"
        if "flags" in span:
            assert isinstance(span["flags"], int)
        for ref in span["references"]:
            _check_keys(ref, {"refType", "traceID", "spanID"}, f"{where} reference")
            assert ref["refType"] in ("CHILD_OF", "FOLLOWS_FROM"), ref
            _check_id(ref["traceID"], 32, f"{where} reference traceID")
            _check_id(ref["spanID"], 16, f"{where} reference spanID")
        for tag in span["tags"]:
            check_keyvalue(tag, f"{where} tag")
        for log in span["logs"]:
            _check_keys(log, {"timestamp", "fields"}, f"{where} log")
            assert isinstance(log["timestamp"], int)
            for tag in log["fields"]:
                check_keyvalue(tag, f"{where} log field")
        assert span["processID"] in processes, f"{where}: unknown processID {span['processID']!r}"
        assert span.get("warnings") is None or isinstance(span["warnings"], list)
    for span in trace["spans"]:
        for ref in span["references"]:
            if ref["refType"] == "CHILD_OF" and ref["traceID"] == trace["traceID"]:
                assert ref["spanID"] in span_ids, f"parent {ref['spanID']} is not in the trace"


def check_envelope(body: Any, *, data_type: type | None = list) -> None:
    """The ``{data, total, limit, offset, errors}`` wrapper."""
    _check_keys(body, {"data", "total", "limit", "offset", "errors"}, "response")
    for name in ("total", "limit", "offset"):
        assert isinstance(body[name], int), f"response.{name} is not an integer"
    if data_type is None:
        assert body["data"] is None
        assert isinstance(body["errors"], list) and body["errors"]
        for error in body["errors"]:
            _check_keys(error, {"code", "msg"}, "error")
            assert isinstance(error["code"], int) and isinstance(error["msg"], str) and error["msg"]
    else:
        assert body["errors"] is None
        assert isinstance(body["data"], data_type)
