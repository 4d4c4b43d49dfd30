"""Redaction: no message text, phone number or e-mail leaves the process unless content capture is on."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.redaction import (
    REDACTED,
    REDACTED_EMAIL,
    REDACTED_PHONE,
    RedactingLogFilter,
    RedactingSpanExporter,
    redact_attributes,
    redact_text,
)
from ghl_real_estate_ai.observability.testing import SpanCapture, capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import (
    add_workflow_event,
    async_workflow_span,
    create_handoff_span,
    propagate_trace_context,
    start_linked_trace,
    trace_workflow_node,
)

PHONE_FORMS = (
    "(512) 555-0143",
    "512-555-0143",
    "512.555.0143",
    "+1 512 555 0143",
    "+15125550143",
    "5125550143",
)
EMAIL = "maria.lopez+home@example.com"
MESSAGE = "Hi, I want to sell my 3 bed house on Oak Street before my divorce is final"
NEEDLES = (*PHONE_FORMS, EMAIL, MESSAGE, "5125550143", "555-0143")
tracer = trace.get_tracer("tests.redaction")


@pytest.mark.parametrize("phone", (*PHONE_FORMS, "1-512-555-0143", "+44 7911 123456", "+447911123456"))
def test_phone_numbers_are_replaced(phone: str) -> None:
    assert redact_text(f"call {phone} today") == f"call {REDACTED_PHONE} today"


@pytest.mark.parametrize(
    "text",
    [
        "on 2026-02-15 at 10:30",
        "price $450,000 for 3 beds",
        "order 123456",
        "version 1.45.1",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "contact ocQHyuzHvysMo5N5VsXc",
        "took 245.67 ms",
    ],
)
def test_ordinary_numbers_and_ids_survive(text: str) -> None:
    assert redact_text(text) == text


def test_email_addresses_are_replaced() -> None:
    assert redact_text(f"write to {EMAIL} or a.b@sub.example.co.uk.") == (
        f"write to {REDACTED_EMAIL} or {REDACTED_EMAIL}."
    )


def test_content_keys_lose_their_whole_value() -> None:
    attributes = {
        "message.body": MESSAGE,
        "body": MESSAGE,
        "text": MESSAGE,
        "email": EMAIL,
        "phone": 5125550143,
        "ghl.message": MESSAGE,
        "gen_ai.prompt.0.content": MESSAGE,
        "sms.body": (MESSAGE, MESSAGE),
        "workflow.contact_id": "ocQHyuzHvysMo5N5VsXc",
        "workflow.duration_ms": 12.5,
    }
    assert redact_attributes(attributes) == {
        "message.body": REDACTED,
        "body": REDACTED,
        "text": REDACTED,
        "email": REDACTED,
        "phone": REDACTED,
        "ghl.message": REDACTED,
        "gen_ai.prompt.0.content": REDACTED,
        "sms.body": (REDACTED, REDACTED),
        "workflow.contact_id": "ocQHyuzHvysMo5N5VsXc",
        "workflow.duration_ms": 12.5,
    }


def test_exception_messages_keep_their_text_but_lose_contact_details() -> None:
    got = redact_attributes({"exception.message": f"no contact for {EMAIL}", "exception.type": "KeyError"})
    assert got == {"exception.message": f"no contact for {REDACTED_EMAIL}", "exception.type": "KeyError"}


def test_urls_queries_and_sql_lose_their_values() -> None:
    got = redact_attributes(
        {
            "url.full": f"https://user:pw@services.leadconnectorhq.com/contacts/search?email={EMAIL}&q=x#frag",
            "http.url": "http://localhost/sandbox/ghl/contacts/+15125550143",
            "http.target": "/api/v1/webhooks/ghl?token=abc",
            "url.query": "phone=5125550143&name=Maria",
            "db.statement": "SELECT * FROM contacts WHERE email = 'maria@example.com' AND id = $1",
            "url.path": "/api/v1/webhooks/ghl",
        }
    )
    assert got == {
        "url.full": "https://services.leadconnectorhq.com/contacts/search?email=[REDACTED]&q=[REDACTED]",
        "http.url": f"http://localhost/sandbox/ghl/contacts/{REDACTED_PHONE}",
        "http.target": "/api/v1/webhooks/ghl?token=[REDACTED]",
        "url.query": "phone=[REDACTED]&name=[REDACTED]",
        "db.statement": "SELECT * FROM contacts WHERE email = '?' AND id = $1",
        "url.path": "/api/v1/webhooks/ghl",
    }


def test_secrets_go_even_when_content_is_captured() -> None:
    attributes = {
        "http.request.header.authorization": ("Bearer pit-123",),
        "x-honeycomb-team": "key",
        "message.body": MESSAGE,
    }
    assert redact_attributes(attributes, capture_content=True) == {
        "http.request.header.authorization": (REDACTED,),
        "x-honeycomb-team": REDACTED,
        "message.body": MESSAGE,
    }


# --- a whole run through the exporter ------------------------------------------------


def strings_of(spans: Iterable[ReadableSpan]) -> Iterator[str]:
    """Every string an exporter could send: names, attribute keys and values, events, links, status."""

    def values(attributes: Any) -> Iterator[str]:
        for key, value in (attributes or {}).items():
            yield key
            for item in value if isinstance(value, tuple | list) else (value,):
                yield str(item)

    for span in spans:
        yield span.name
        yield span.status.description or ""
        yield from values(span.attributes)
        for event in span.events:
            yield event.name
            yield from values(event.attributes)
        for link in span.links:
            yield from values(link.attributes)


def leaks(spans: Iterable[ReadableSpan]) -> set[str]:
    return {needle for text in strings_of(spans) for needle in NEEDLES if needle in text}


@trace_workflow_node("seller_bot", "analyze_seller_intent")
async def analyze_seller_intent(state: dict[str, Any]) -> dict[str, Any]:
    log = logging.getLogger("tests.redaction.bot")
    # Structured: the body travels as an `extra` field the JSON log formatter writes out.
    log.info("inbound from %s <%s>", state["phone"], state["email"], extra={"body": state["body"]})
    add_workflow_event("message_received", body=state["body"], phone=state["phone"], channel="SMS")
    add_workflow_event("contact_matched", detail=f"matched on {state['email']} / {state['phone']}")
    async with async_workflow_span("seller_bot", "calculate_frs", **{"message.body": state["body"]}) as span:
        span.set_attribute("ghl.reply_preview", f"Thanks! We'll call {state['phone']}")
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as client:
        client.set_attribute("url.full", f"http://sandbox/contacts/search?query={state['email']}")
        client.set_attribute("http.request.header.authorization", ("Bearer pit-secret",))
    if state.get("fail"):
        raise LookupError(f"no calendar slot for {state['email']} ({state['phone']})")
    return {"temperature": "hot"}


async def run_conversation() -> None:
    for index, phone in enumerate(PHONE_FORMS):
        state = {
            "contact_id": f"c{index}",
            "phone": phone,
            "email": EMAIL,
            "body": MESSAGE,
            "fail": index == 1,
        }
        with contextlib.suppress(LookupError):
            await analyze_seller_intent(state)
    with create_handoff_span("seller", "buyer", "c0", 0.7, "buyer_intent_detected"):
        metadata = propagate_trace_context({"note": MESSAGE})
    with start_linked_trace("followup.day_3", metadata, **{"sms.body": MESSAGE, "to": PHONE_FORMS[0]}):
        pass


@pytest.fixture
def log_stream() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s body=%(body)s", defaults={"body": "-"}))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream, handler
    logger.removeHandler(handler)


async def test_a_run_exports_no_phone_email_or_message_text(
    log_stream: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = log_stream
    handler.addFilter(RedactingLogFilter(capture_content=False))
    exported = InMemorySpanExporter()
    with capture_spans(exporter=RedactingSpanExporter(exported, capture_content=False)) as raw:
        await run_conversation()
        raw_spans = raw.spans()

    # The run really carried the data (so an empty scan below means something)...
    assert leaks(raw_spans) == set(NEEDLES)
    # ...and none of it reached the exporter or the log.
    redacted = exported.get_finished_spans()
    assert len(redacted) == len(raw_spans) == 20
    assert leaks(redacted) == set()
    log_text = stream.getvalue()
    assert log_text.count("inbound from") == len(PHONE_FORMS)
    assert not {needle for needle in NEEDLES if needle in log_text}
    assert "Bearer pit-secret" not in "".join(strings_of(redacted))
    # What stays: the structure and the ids a user filters on.
    names = {span.name for span in redacted}
    assert {"seller_bot.analyze_seller_intent", "handoff.seller_to_buyer", "followup.day_3"} <= names
    contacts = {span.attributes.get(attr.WORKFLOW_CONTACT_ID) for span in redacted} - {None}
    assert contacts == {f"c{index}" for index in range(len(PHONE_FORMS))}


async def test_with_content_capture_on_the_data_is_kept(
    log_stream: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = log_stream
    handler.addFilter(RedactingLogFilter(capture_content=True))
    exported = InMemorySpanExporter()
    with capture_spans(exporter=RedactingSpanExporter(exported, capture_content=True)):
        await run_conversation()
    assert leaks(exported.get_finished_spans()) == set(NEEDLES)
    assert EMAIL in stream.getvalue()
    assert "Bearer pit-secret" not in "".join(strings_of(exported.get_finished_spans()))


def test_redacted_copies_keep_everything_but_the_content(span_capture: SpanCapture) -> None:
    with (
        tracer.start_as_current_span("parent"),
        tracer.start_as_current_span("child", kind=SpanKind.SERVER, attributes={"email": EMAIL}) as child,
    ):
        child.set_status(StatusCode.ERROR, f"failed for {EMAIL}")
    original = span_capture.by_name("child")[0]
    exported = InMemorySpanExporter()
    RedactingSpanExporter(exported, capture_content=False).export([original])
    (copy,) = exported.get_finished_spans()
    assert copy.context == original.context
    assert copy.parent == original.parent
    assert (copy.start_time, copy.end_time) == (original.start_time, original.end_time)
    assert copy.kind is SpanKind.SERVER
    assert copy.resource == original.resource
    assert copy.instrumentation_scope == original.instrumentation_scope
    assert copy.status.status_code is StatusCode.ERROR
    assert copy.status.description == f"failed for {REDACTED_EMAIL}"
    assert copy.attributes == {"email": REDACTED}
    assert original.attributes == {"email": EMAIL}  # the live span is untouched


def test_unset_capture_reads_the_setting_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RedactingSpanExporter(InMemorySpanExporter()).capture_content is False
    monkeypatch.setenv("OTEL_CAPTURE_CONTENT", "true")
    assert RedactingSpanExporter(InMemorySpanExporter()).capture_content is True
    assert RedactingLogFilter().capture_content is True


def test_a_span_that_cannot_be_redacted_is_dropped_not_leaked(caplog: pytest.LogCaptureFixture) -> None:
    broken = ReadableSpan(name="broken", events=[object()])  # type: ignore[list-item]
    fine = ReadableSpan(name=f"mail {EMAIL}")
    exported = InMemorySpanExporter()
    exporter = RedactingSpanExporter(exported, capture_content=False)
    exporter.export([broken, fine])
    assert [span.name for span in exported.get_finished_spans()] == [f"mail {REDACTED_EMAIL}"]
    assert exporter.dropped_spans == 1
    assert "could not redact span 'broken'" in caplog.text
    assert exporter.force_flush() is True
    exporter.shutdown()


def test_log_filter_redacts_args_exceptions_and_extra_fields() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sms to %s failed", (PHONE_FORMS[0],), None)
    try:
        raise ValueError(f"bounced: {EMAIL}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    record.__dict__["body"] = MESSAGE
    record.__dict__["detail"] = f"reply from {EMAIL}"
    assert RedactingLogFilter(capture_content=False).filter(record) is True
    assert record.getMessage() == f"sms to {REDACTED_PHONE} failed"
    assert record.exc_text is not None
    assert "ValueError: bounced: [REDACTED_EMAIL]" in record.exc_text
    assert record.__dict__["body"] == REDACTED
    assert record.__dict__["detail"] == f"reply from {REDACTED_EMAIL}"
    formatted = logging.Formatter().format(record)
    assert EMAIL not in formatted
    assert PHONE_FORMS[0] not in formatted


def test_log_filter_lets_a_broken_format_string_through_untouched() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactingLogFilter(capture_content=False).filter(record) is True
    assert record.msg == "%d items"


def test_unreadable_settings_fail_closed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_CAPTURE_CONTENT", "perhaps")
    exporter = RedactingSpanExporter(InMemorySpanExporter())
    assert exporter.capture_content is False
    assert "could not read OTEL_CAPTURE_CONTENT" in caplog.text


def test_a_span_with_nothing_to_redact_is_handed_on_as_it_is(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span(
        "SELECT contacts", attributes={"db.statement": "SELECT * FROM contacts WHERE contact_id = ?", "n": 3}
    ) as span:
        span.add_event("retry", {"attempt": 2})
    original = span_capture.by_name("SELECT contacts")[0]
    exported = InMemorySpanExporter()
    RedactingSpanExporter(exported, capture_content=False).export([original])
    assert exported.get_finished_spans()[0] is original  # no copy when nothing changes


@pytest.mark.parametrize("where", ["event name", "event attribute", "link attribute", "status"])
def test_content_only_in_an_event_link_or_status_is_still_redacted(
    span_capture: SpanCapture, where: str
) -> None:
    with tracer.start_as_current_span("other") as other:
        pass
    links = (
        [trace.Link(other.get_span_context(), {"phone": PHONE_FORMS[0]})] if where == "link attribute" else []
    )
    with tracer.start_as_current_span("clean name", links=links) as span:
        if where == "event name":
            span.add_event(f"mailed {EMAIL}")
        elif where == "event attribute":
            span.add_event("sms", {"note": f"from {PHONE_FORMS[1]}"})
        elif where == "status":
            span.set_status(StatusCode.ERROR, f"bounce {EMAIL}")
    original = span_capture.by_name("clean name")[0]
    exported = InMemorySpanExporter()
    RedactingSpanExporter(exported, capture_content=False).export([original])
    (copy,) = exported.get_finished_spans()
    assert copy is not original
    events = [(event.name, dict(event.attributes or {})) for event in copy.events]
    link_attributes = [dict(link.attributes or {}) for link in copy.links]
    text = repr((copy.name, copy.status.description, events, link_attributes))
    for needle in (EMAIL, PHONE_FORMS[0], PHONE_FORMS[1]):
        assert needle not in text
    assert copy.attributes == original.attributes


def test_repeated_values_redact_the_same_and_the_caches_stay_bounded() -> None:
    from ghl_real_estate_ai.observability import redaction

    sql = "UPDATE outbox SET status = 'sent' WHERE id = ?"
    first = redact_attributes({"db.statement": sql, "http.url": "https://x.test/a?token=1"})
    for n in range(3 * redaction._MAX_CACHED):
        redact_attributes({f"key.{n}": "v", "db.statement": f"SELECT '{n}' FROM t"})
    assert redact_attributes({"db.statement": sql, "http.url": "https://x.test/a?token=1"}) == first
    assert first == {
        "db.statement": "UPDATE outbox SET status = '?' WHERE id = ?",
        "http.url": "https://x.test/a?token=[REDACTED]",
    }
    assert len(redaction._plans) <= redaction._MAX_CACHED
    assert len(redaction._parsed) <= redaction._MAX_CACHED


def test_an_event_whose_name_is_redacted_keeps_its_attributes(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("clean name") as span:
        span.add_event(f"mailed {EMAIL}", {"slot.name": "areas", "count": 2})
    original = span_capture.by_name("clean name")[0]
    exported = InMemorySpanExporter()
    RedactingSpanExporter(exported, capture_content=False).export([original])
    (copy,) = exported.get_finished_spans()
    (event,) = copy.events
    assert EMAIL not in event.name
    assert dict(event.attributes or {}) == {"slot.name": "areas", "count": 2}
