"""HTTP client spans named `{method} {url.template}` (issue 12, point 9)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.observability.url_templates import match_url_template, register_url_templates

TEMPLATES = ("/contacts/{contactId}", "/contacts/{contactId}/tags", "/calendars/{calendarId}/free-slots")


def test_the_longest_matching_template_wins_whatever_the_base_path() -> None:
    register_url_templates(TEMPLATES)
    assert match_url_template("https://services.leadconnectorhq.com/contacts/abc/tags") == TEMPLATES[1]
    assert match_url_template("http://127.0.0.1:8000/sandbox/ghl/contacts/abc") == TEMPLATES[0]
    assert match_url_template("http://x/calendars/cal-1/free-slots?startDate=1") == TEMPLATES[2]
    assert match_url_template("http://x/contacts/abc/notes") is None
    assert match_url_template("http://x/notcontacts/abc") is None


def test_only_client_spans_named_by_their_method_are_renamed() -> None:
    register_url_templates(TEMPLATES)
    tracer = trace.get_tracer("tests")
    url = "http://ghl-sandbox/contacts/c-1/tags"
    with capture_spans() as capture:
        with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes={"url.full": url}):
            pass
        with tracer.start_as_current_span("DELETE", kind=SpanKind.CLIENT, attributes={"http.url": url}):
            pass
        with tracer.start_as_current_span("POST", kind=SpanKind.SERVER, attributes={"url.full": url}):
            pass
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={"url.full": "http://x/y"}):
            pass
    names = [(s.name, (s.attributes or {}).get("url.template")) for s in capture.spans()]
    assert names == [
        ("POST /contacts/{contactId}/tags", "/contacts/{contactId}/tags"),
        ("DELETE /contacts/{contactId}/tags", "/contacts/{contactId}/tags"),
        ("POST", None),
        ("GET", None),
    ]
