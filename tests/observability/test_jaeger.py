"""Jaeger's JSON shapes (both ways) and the Jaeger query API client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from jaeger_shape import check_envelope, check_trace
from opentelemetry.trace import SpanContext, TraceFlags
from tracegen import Node, emit, handoff_journey, make_provider

from ghl_real_estate_ai.errors import TraceQueryError
from ghl_real_estate_ai.observability.jaeger import (
    JaegerReader,
    envelope,
    from_jaeger_trace,
    jaeger_tag,
    matches,
    to_jaeger_trace,
)
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader
from ghl_real_estate_ai.observability.query import SpanRecord


@pytest.fixture
def reader(tmp_path: Path) -> LocalTraceReader:
    return LocalTraceReader(tmp_path / "traces.db")


def _store(reader: LocalTraceReader) -> LocalSpanExporter:
    return LocalSpanExporter(reader.path)


def test_handoff_trace_has_jaegers_shape_with_references_and_typed_tags(reader: LocalTraceReader) -> None:
    """Parents are CHILD_OF, kind/status are Jaeger's tags, values keep their types, events are logs."""
    provider = make_provider(_store(reader))
    trace_id = emit(provider, handoff_journey("c-9"))
    provider.shutdown()
    body = envelope([to_jaeger_trace(reader.get_trace(trace_id))])
    check_envelope(body)
    (trace,) = body["data"]
    check_trace(trace)
    spans = {span["operationName"]: span for span in trace["spans"]}
    root = spans["POST /api/v1/webhooks/ghl"]
    assert root["references"] == []
    assert {"key": "span.kind", "type": "string", "value": "server"} in root["tags"]
    assert {"key": "http.status_code", "type": "int64", "value": 200} in root["tags"]
    analyze = spans["lead_bot.analyze_intent"]
    assert analyze["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": root["spanID"]}]
    assert analyze["duration"] == 100_000  # microseconds
    assert analyze["startTime"] == root["startTime"] + 5_000
    assert {"key": "workflow.success", "type": "bool", "value": True} in analyze["tags"]
    assert analyze["logs"][0]["fields"][0] == {"key": "event", "type": "string", "value": "intent_detected"}
    handoff = spans["handoff.lead_to_buyer"]
    assert {"key": "handoff.confidence", "type": "float64", "value": 0.85} in handoff["tags"]
    assert trace["processes"]["p1"]["serviceName"] == "enterprisehub"
    assert {"key": "deployment.environment", "type": "string", "value": "test"} in trace["processes"]["p1"][
        "tags"
    ]


def test_links_errors_and_processes(reader: LocalTraceReader) -> None:
    """A span link is a FOLLOWS_FROM reference; ERROR adds error=true; each service its process."""
    exporter = _store(reader)
    provider = make_provider(exporter)
    first = emit(provider, Node("lead_bot.send_day_3_sms", 0, 5))
    first_span = reader.get_trace(first)[0]
    link = SpanContext(int(first, 16), int(first_span.span_id, 16), False, TraceFlags(1))
    worker = make_provider(exporter, service="worker")
    second = emit(
        worker,
        Node("followups.day_7", 0, 9, {"bad": float("inf")}, error="boom", links=[link]),
    )
    trace = to_jaeger_trace(reader.get_trace(second) + reader.get_trace(first))
    check_trace({**trace, "spans": [s for s in trace["spans"] if s["traceID"] == trace["traceID"]]})
    followup = next(s for s in trace["spans"] if s["operationName"] == "followups.day_7")
    assert followup["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": first, "spanID": first_span.span_id}
    ]
    assert {"key": "error", "type": "bool", "value": True} in followup["tags"]
    assert {"key": "otel.status_code", "type": "string", "value": "ERROR"} in followup["tags"]
    assert {"key": "otel.status_description", "type": "string", "value": "boom"} in followup["tags"]
    assert {"key": "bad", "type": "string", "value": "inf"} in followup["tags"]
    assert {p["serviceName"] for p in trace["processes"].values()} == {"worker", "enterprisehub"}
    json.dumps(trace, allow_nan=False)  # strict JSON: no NaN/inf anywhere


def test_jaeger_json_reads_back_into_the_same_records(reader: LocalTraceReader) -> None:
    """from_jaeger_trace(to_jaeger_trace(spans)) gives back the spans (ms-precise times)."""
    provider = make_provider(_store(reader))
    trace_id = emit(provider, handoff_journey("c-rt"))
    provider.shutdown()
    original = reader.get_trace(trace_id)
    again = from_jaeger_trace(json.loads(json.dumps(to_jaeger_trace(original))))

    def key(span: SpanRecord) -> str:
        return span.span_id

    assert sorted(again, key=key) == sorted(original, key=key)


def test_reads_what_a_real_jaeger_writes() -> None:
    """Jaeger's own JSON: 16-digit ids are padded, error=true without otel status means ERROR."""
    trace = {
        "traceID": "00f067aa0ba902b7",
        "spans": [
            {
                "traceID": "00f067aa0ba902b7",
                "spanID": "b7ad6b7169203331",
                "flags": 1,
                "operationName": "HTTP GET",
                "references": [],
                "startTime": 1_700_000_000_000_000,
                "duration": 2500,
                "tags": [
                    {"key": "error", "type": "bool", "value": True},
                    {"key": "span.kind", "type": "string", "value": "client"},
                    {"key": "retries", "type": "int64", "value": 3},
                    {"key": "internal.span.format", "type": "string", "value": "proto"},
                ],
                "logs": [
                    {
                        "timestamp": 1_700_000_000_001_000,
                        "fields": [{"key": "message", "type": "string", "value": "x"}],
                    }
                ],
                "processID": "p1",
                "warnings": None,
            }
        ],
        "processes": {
            "p1": {"serviceName": "legacy", "tags": [{"key": "hostname", "type": "string", "value": "h"}]}
        },
        "warnings": None,
    }
    check_trace(trace)
    (span,) = from_jaeger_trace(trace)
    assert span.trace_id == "0000000000000000" + "00f067aa0ba902b7"
    assert span.is_error and span.kind == "CLIENT" and span.attributes == {"retries": 3}
    assert span.duration_ms == 2.5 and span.resource == {"hostname": "h", "service.name": "legacy"}
    assert span.events[0].name == "log" and span.events[0].attributes == {"message": "x"}
    with pytest.raises(TraceQueryError, match="Jaeger's shape"):
        from_jaeger_trace({"spans": [{"spanID": "zz"}]})


def test_jaeger_tag_types() -> None:
    """Python values map to Jaeger's typed tags; lists become JSON strings."""
    assert jaeger_tag("a", True)["type"] == "bool"
    assert jaeger_tag("a", 7) == {"key": "a", "type": "int64", "value": 7}
    assert jaeger_tag("a", 1.5)["type"] == "float64"
    assert jaeger_tag("a", ["x", "y"]) == {"key": "a", "type": "string", "value": '["x","y"]'}


def test_matches_uses_any_span_semantics(reader: LocalTraceReader) -> None:
    """Tags may be on different spans; durations bound the operation's spans or the trace."""
    provider = make_provider(_store(reader))
    spans = reader.get_trace(emit(provider, handoff_journey("c-m", temperature="warm")))
    assert matches(spans, tags={"handoff.source_bot": "lead", "workflow.temperature": "warm"})
    assert not matches(spans, tags={"workflow.temperature": "hot"})
    assert matches(spans, operation="handoff.lead_to_buyer", min_duration_ms=150, max_duration_ms=150)
    assert not matches(spans, operation="handoff.lead_to_buyer", min_duration_ms=151)
    assert matches(spans, min_duration_ms=349, service="enterprisehub")
    assert not matches(spans, service="worker")


def _jaeger(
    traces_by_service: dict[str, list[dict[str, Any]]], seen: list[httpx.Request]
) -> httpx.MockTransport:
    """A stand-in for a remote Jaeger query service (the network edge)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/api/services":
            return httpx.Response(200, json=envelope(sorted(traces_by_service)))
        if path.startswith("/api/services/"):
            service = path.split("/")[3]
            ops = sorted({s["operationName"] for t in traces_by_service.get(service, []) for s in t["spans"]})
            return httpx.Response(200, json=envelope(ops))
        if path == "/api/traces":
            return httpx.Response(
                200, json=envelope(traces_by_service.get(request.url.params["service"], []))
            )
        for traces in traces_by_service.values():
            for trace in traces:
                if path == f"/api/traces/{trace['traceID']}":
                    return httpx.Response(200, json=envelope([trace]))
        return httpx.Response(404, json={"data": None, "errors": [{"code": 404, "msg": "trace not found"}]})

    return httpx.MockTransport(handle)


def test_reader_merges_services_and_applies_filters_locally(reader: LocalTraceReader) -> None:
    """Without a service every service is searched; the first tag goes to Jaeger, all are checked."""
    exporter = _store(reader)
    hot = emit(make_provider(exporter), handoff_journey("c-1", temperature="hot"))
    warm = emit(make_provider(exporter), handoff_journey("c-2", temperature="warm"))
    job = emit(make_provider(exporter, service="worker"), Node("followups.run_due", 0, 900))
    traces = {
        "enterprisehub": [to_jaeger_trace(reader.get_trace(hot)), to_jaeger_trace(reader.get_trace(warm))],
        "worker": [to_jaeger_trace(reader.get_trace(job))],
    }
    seen: list[httpx.Request] = []
    with JaegerReader("http://jaeger.test:16686", transport=_jaeger(traces, seen), token="t") as remote:
        assert remote.services() == ["enterprisehub", "worker"]
        assert "lead_bot.analyze_intent" in remote.operations("enterprisehub")
        longest = remote.find_traces()
        assert [s.trace_id for s in longest] == [job, hot, warm] or [s.trace_id for s in longest] == [
            job,
            warm,
            hot,
        ]
        found = remote.find_traces(tags={"handoff.source_bot": "lead", "workflow.temperature": "warm"})
        assert [s.trace_id for s in found] == [warm]
        searches = [r for r in seen if r.url.path == "/api/traces"]
        assert json.loads(searches[-1].url.params["tags"]) == {"handoff.source_bot": "lead"}
        assert seen[0].headers["authorization"] == "Bearer t"
        assert [s.name for s in remote.get_trace(job)] == ["followups.run_due"]
        assert remote.get_trace("ab" * 16) == []
        assert len(list(remote.spans())) == 10 + 10 + 1


def test_reader_errors_are_one_clear_line() -> None:
    """Bad URL, unreachable host, refusing server: TraceQueryError naming the problem."""
    with pytest.raises(TraceQueryError, match="not valid"):
        JaegerReader("localhost:16686")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TraceQueryError, match="cannot reach Jaeger"):
        JaegerReader("http://nowhere.test", transport=httpx.MockTransport(refuse)).services()

    def bad(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"data": None, "errors": [{"code": 400, "msg": "parameter 'service' is required"}]}
        )

    with pytest.raises(TraceQueryError, match="service' is required"):
        JaegerReader("http://j.test", transport=httpx.MockTransport(bad)).find_traces(service="x")
