"""Structured logs carry the trace and span ids and keep contact details out."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from ghl_real_estate_ai.logs import configure_logging


def test_json_line_has_trace_and_span_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("jorge.test").info("hello", extra={"contact": "c-1"})
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    context = span.get_span_context()
    assert entry["message"] == "hello"
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert entry["contact"] == "c-1"


def test_outside_a_span_ids_are_null(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("jorge.test").warning("no span")
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["trace_id"] is None and entry["level"] == "WARNING"


def test_phone_and_email_are_redacted_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("jorge.test").info("reach me at %s or %s", "+1 (909) 555-0142", "ann@example.com")
    line = capsys.readouterr().err
    assert "555-0142" not in line and "ann@example.com" not in line


def test_configure_twice_keeps_one_handler() -> None:
    configure_logging("INFO", "json")
    configure_logging("DEBUG", "console")
    names = [h.get_name() for h in logging.getLogger().handlers]
    assert names.count("jorge") == 1


def test_records_follow_stderr_when_it_is_swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A harness that swaps stderr and closes its stand-in must not break later log lines."""
    import io

    configure_logging("INFO", "json")
    stand_in = io.StringIO()
    monkeypatch.setattr("sys.stderr", stand_in)
    logging.getLogger("jorge.test").info("during")
    assert "during" in stand_in.getvalue()
    stand_in.close()
    monkeypatch.undo()
    logging.getLogger("jorge.test").info("after")  # would raise "I/O operation on closed file" before
