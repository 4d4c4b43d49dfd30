"""Keep message text, phone numbers and e-mail addresses out of spans and logs.

Contacts write their phone number, e-mail and life story into SMS; none of it
may reach a trace backend or a log file unless ``OTEL_CAPTURE_CONTENT=true``
(DESIGN 4). Redaction happens where telemetry leaves the process, so it covers
our spans and the auto-instrumentations' alike:

* wrap every span exporter: ``RedactingSpanExporter(OTLPSpanExporter(...))``;
  it hands the inner exporter redacted copies, in the export thread, never on
  the request path;
* add :class:`RedactingLogFilter` to every log handler.

What is removed when content capture is off:

* in every string value (attributes, event and link attributes, span names,
  status descriptions, log lines): e-mail addresses become ``[REDACTED_EMAIL]``
  and phone numbers (US forms such as ``(555) 123-4567``, ``555.123.4567``,
  ``+1 555 123 4567``, ``5551234567``, and E.164 such as ``+447911123456``)
  become ``[REDACTED_PHONE]``;
* the whole value of content keys (:data:`CONTENT_KEYS`, and keys ending in one
  of :data:`CONTENT_SUFFIXES`, such as ``message.body``), which becomes ``[REDACTED]``;
* query-string values and user:password of URL attributes (:data:`URL_KEYS`:
  ``url.full``, ``http.url``, ``http.target``...); all of ``url.query``;
  string literals of SQL in ``db.statement``/``db.query.text``.

Always removed, even with content capture on: credentials (:data:`SECRET_KEYS`,
matched on the last segment of the key, e.g. ``http.request.header.authorization``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit, urlunsplit

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from ghl_real_estate_ai.observability._fastspan import attributes_of, events_of, links_of

__all__ = [
    "CONTENT_KEYS",
    "CONTENT_SUFFIXES",
    "REDACTED",
    "REDACTED_EMAIL",
    "REDACTED_PHONE",
    "SECRET_KEYS",
    "URL_KEYS",
    "RedactingLogFilter",
    "RedactingSpanExporter",
    "redact_attributes",
    "redact_span",
    "redact_text",
]

_LOGGER = logging.getLogger(__name__)

REDACTED: Final = "[REDACTED]"
"""Replaces the whole value of a content or secret key."""

REDACTED_EMAIL: Final = "[REDACTED_EMAIL]"
"""Replaces an e-mail address inside a string."""

REDACTED_PHONE: Final = "[REDACTED_PHONE]"
"""Replaces a phone number inside a string."""

CONTENT_KEYS: Final = frozenset(
    {
        "body",
        "message",
        "text",
        "content",
        "email",
        "email_address",
        "phone",
        "phone_number",
        "subject",
        "html",
        "prompt",
        "completion",
        "reply",
        "message.body",
        "message.text",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
    }
)
"""Keys whose whole value is conversation content or contact details."""

CONTENT_SUFFIXES: Final = (
    ".body",
    ".text",
    ".content",
    ".message",
    ".email",
    ".email_address",
    ".phone",
    ".phone_number",
    ".subject",
    ".html",
    ".prompt",
    ".completion",
)
"""Key endings that mark content (``exception.message`` is exempt: it is pattern-redacted)."""

_PATTERN_ONLY_KEYS: Final = frozenset({"exception.message", "exception.stacktrace", "exception.type"})

SECRET_KEYS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api_key",
        "apikey",
        "x-honeycomb-team",
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "x-ghl-signature",
        "x-wh-signature",
    }
)
"""Last key segments holding credentials; redacted whatever OTEL_CAPTURE_CONTENT says."""

URL_KEYS: Final = frozenset({"url.full", "http.url", "http.target", "url.original"})
"""Keys holding a URL or path: query values and user info are removed, the rest pattern-redacted."""

_QUERY_KEYS: Final = frozenset({"url.query"})
_SQL_KEYS: Final = frozenset({"db.statement", "db.query.text"})

_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Candidate phone numbers; _phone_or_keep checks the digit count (7-15, E.164's bound,
# and 10-11 for the US forms) so dates, prices and versions survive.
_PHONE: Final = re.compile(
    r"""
    (?<![\w+])
    (?:
        \+\d[\d\s().-]{5,20}\d                               # +<country> ... (E.164, any separators)
      | (?:1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}     # US: (555) 123-4567, 1-555-123-4567
    )
    (?![\w])
    """,
    re.VERBOSE,
)
_SQL_LITERAL: Final = re.compile(r"'(?:[^']|'')*'")
# No phone number has fewer than 7 digits: most strings skip the phone pattern.
_SEVEN_DIGITS: Final = re.compile(r"(?:\d[^\d]{0,3}){6}\d")


def _phone_or_keep(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(char.isdigit() for char in found)
    if found.startswith("+"):
        return REDACTED_PHONE if 7 <= digits <= 15 else found
    return REDACTED_PHONE if digits in (10, 11) else found


def redact_text(value: str) -> str:
    """Replace e-mail addresses and phone numbers inside ``value``.

    Args:
        value: any text.

    Returns:
        The text with ``[REDACTED_EMAIL]`` / ``[REDACTED_PHONE]`` in their place.
    """
    if "@" in value:
        value = _EMAIL.sub(REDACTED_EMAIL, value)
    if _SEVEN_DIGITS.search(value):
        value = _PHONE.sub(_phone_or_keep, value)
    return value


# Constant tuples: ``X | Y`` in an isinstance call builds a union object on every call.
_SEQUENCE_TYPES: Final = (tuple, list)
_NUMBER_TYPES: Final = (bool, int, float)


def _whole(value: Any) -> Any:
    if isinstance(value, _SEQUENCE_TYPES):
        return tuple(REDACTED for _ in value)
    return REDACTED


def _last_segment(key: str) -> str:
    return key.rsplit(".", 1)[-1].lower()


def _is_content_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in _PATTERN_ONLY_KEYS:
        return False
    return lowered in CONTENT_KEYS or lowered.endswith(CONTENT_SUFFIXES)


# What a key calls for, decided once per key: a span carries a handful of keys
# that repeat on every span, so the export thread pays one dict lookup per
# attribute instead of lower-casing and suffix-matching each time.
_SECRET: Final = 0
_CONTENT: Final = 1
_URL: Final = 2
_QUERY: Final = 3
_SQL: Final = 4
_TEXT: Final = 5
_MAX_CACHED: Final = 4096
_plans: dict[str, int] = {}
# Redacted forms of URL, query and SQL values, which are costly to parse and
# repeat (the same statements and GHL paths on every webhook). Bounded: cleared
# when full, so memory stays flat whatever the traffic.
_MAX_CACHED_VALUE: Final = 2048
_parsed: dict[tuple[int, str], str] = {}
# Redacted forms of short plain values, for the same reason (only short ones: free text is not kept).
_MAX_CACHED_TEXT: Final = 64
_texts: dict[str, str] = {}
# Short (key, string value) pairs that redaction with content capture off leaves as they are:
# the ids, names and labels every span of a trace repeats cost one set look-up each.
_kept: set[tuple[str, str]] = set()


def _plan(key: str) -> int:
    plan = _plans.get(key)
    if plan is None:
        lowered = key.lower()
        if lowered.rsplit(".", 1)[-1] in SECRET_KEYS:
            plan = _SECRET
        elif _is_content_key(key):
            plan = _CONTENT
        elif lowered in URL_KEYS:
            plan = _URL
        elif lowered in _QUERY_KEYS:
            plan = _QUERY
        elif lowered in _SQL_KEYS:
            plan = _SQL
        else:
            plan = _TEXT
        if len(_plans) >= _MAX_CACHED:
            _plans.clear()
        _plans[key] = plan
    return plan


def _redact_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return redact_text(value)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    query = _redact_query(parts.query) if parts.query else ""
    cleaned = SplitResult(parts.scheme, netloc, redact_text(parts.path), query, "")
    return urlunsplit(cleaned)


def _redact_query(query: str) -> str:
    names = []
    for pair in query.split("&"):
        name = pair.split("=", 1)[0]
        names.append(f"{redact_text(name)}={REDACTED}" if name else REDACTED)
    return "&".join(names)


def _redact_sql(value: str) -> str:
    return redact_text(_SQL_LITERAL.sub("'?'", value))


_PARSERS: Final = {_URL: _redact_url, _QUERY: _redact_query, _SQL: _redact_sql}


def _redact_by_plan(plan: int, value: str) -> str:
    if plan == _TEXT:
        if len(value) > _MAX_CACHED_TEXT:
            return redact_text(value)
        # Short values (ids, labels, route names) repeat on span after span: scan each once.
        cached = _texts.get(value)
        if cached is None:
            cached = redact_text(value)
            if len(_texts) >= _MAX_CACHED:
                _texts.clear()
            _texts[value] = cached
        return cached
    if len(value) > _MAX_CACHED_VALUE:
        return _PARSERS[plan](value)
    cache_key = (plan, value)
    cached = _parsed.get(cache_key)
    if cached is None:
        cached = _PARSERS[plan](value)
        if len(_parsed) >= _MAX_CACHED:
            _parsed.clear()
        _parsed[cache_key] = cached
    return cached


def _redact_string(key: str, value: str) -> str:
    plan = _plan(key)
    return _redact_by_plan(plan if plan > _CONTENT else _TEXT, value)


def _redact_value(key: str, value: Any, capture_content: bool) -> Any:
    plan = _plan(key)
    if plan == _SECRET:
        return _whole(value)
    if capture_content:
        return value
    if plan == _CONTENT:
        return _whole(value)
    if isinstance(value, str):
        return _redact_by_plan(plan, value)
    if isinstance(value, _NUMBER_TYPES):
        # The common case after strings: nothing in a number can be content.
        return value
    if isinstance(value, _SEQUENCE_TYPES) and any(isinstance(item, str) for item in value):
        return tuple(_redact_by_plan(plan, item) if isinstance(item, str) else item for item in value)
    return value


def _keep(key: str, value: str) -> None:
    if len(_kept) >= _MAX_CACHED:
        _kept.clear()
    _kept.add((key, value))


def _redacted_or_none(attributes: Mapping[str, Any] | None, capture_content: bool) -> dict[str, Any] | None:
    """The redacted attributes, or ``None`` when redaction leaves every value as it is."""
    if not attributes:
        return None
    changed: dict[str, Any] | None = None
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:
            if not capture_content and (key, value) in _kept:
                continue  # seen before and left as it is
        elif kind is bool or kind is int or kind is float:
            plan = _plans.get(key)
            if (plan if plan is not None else _plan(key)) > _CONTENT:
                continue  # nothing in a number can be content (what _redact_value decides)
        cleaned = _redact_value(key, value, capture_content)
        if cleaned is value or cleaned == value:
            if kind is str and not capture_content and len(value) <= _MAX_CACHED_TEXT:
                _keep(key, value)
            continue
        if changed is None:
            changed = dict(attributes)
        changed[key] = cleaned
    return changed


def redact_attributes(attributes: Mapping[str, Any] | None, capture_content: bool = False) -> dict[str, Any]:
    """A redacted copy of span, event or link attributes.

    Args:
        attributes: the attributes (``None`` gives ``{}``).
        capture_content: keep content, phone numbers and e-mails (secrets still go).

    Returns:
        A new dict; the input is not changed.
    """
    if not attributes:
        return {}
    return {key: _redact_value(key, value, capture_content) for key, value in attributes.items()}


def redact_span(span: ReadableSpan, capture_content: bool = False) -> ReadableSpan:
    """A copy of ``span`` with redacted name, attributes, events, links and status text.

    Ids, parent, kind, times, resource and instrumentation scope are kept as they are.

    Args:
        span: a finished span.
        capture_content: keep content, phone numbers and e-mails (secrets still go).

    Returns:
        A new ``ReadableSpan``.
    """
    events = [
        Event(
            event.name if capture_content else redact_text(event.name),
            redact_attributes(event.attributes, capture_content),
            event.timestamp,
        )
        for event in span.events
    ]
    links = [Link(link.context, redact_attributes(link.attributes, capture_content)) for link in span.links]
    status = span.status
    if status.description and not capture_content:
        status = Status(status.status_code, redact_text(status.description))
    return ReadableSpan(
        name=span.name if capture_content else redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes, capture_content),
        events=events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redact_span_if_needed(span: ReadableSpan, capture_content: bool) -> ReadableSpan:
    """:func:`redact_span`'s result, but ``span`` itself when redaction changes nothing in it.

    Most spans (node names, ids, SQL without literals) hold nothing to redact;
    handing the finished span on as it is saves a copy per span in the export thread.
    """
    name = span.name if capture_content else _redact_by_plan(_TEXT, span.name)
    changed = name != span.name
    # A rebuilt span (the trace writer's) holds a plain dict: read it as it is, not through
    # the read-only proxy its attributes property makes.
    stored = span.__dict__.get("_attributes") if type(span) is ReadableSpan else None
    attributes = _redacted_or_none(stored if type(stored) is dict else attributes_of(span), capture_content)
    changed = changed or attributes is not None
    events: list[Event] = []
    for event in events_of(span):
        event_name = event.name if capture_content else _redact_by_plan(_TEXT, event.name)
        event_attributes = _redacted_or_none(attributes_of(event), capture_content)
        if event_attributes is None and event_name == event.name:
            events.append(event)
        else:
            changed = True
            kept = event_attributes if event_attributes is not None else attributes_of(event)
            events.append(Event(event_name, kept, event.timestamp))
    links: list[Link] = []
    for link in links_of(span):
        link_attributes = _redacted_or_none(attributes_of(link), capture_content)
        if link_attributes is None:
            links.append(link)
        else:
            changed = True
            links.append(Link(link.context, link_attributes))
    status = span.status
    if status.description and not capture_content:
        description = redact_text(status.description)
        if description != status.description:
            changed = True
            status = Status(status.status_code, description)
    if not changed:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _capture_setting(capture_content: bool | None) -> bool:
    if capture_content is not None:
        return capture_content
    from ghl_real_estate_ai.observability.config import TracingConfig

    try:
        config = TracingConfig.from_env()
        for problem in config.problems:
            if problem.startswith("OTEL_CAPTURE_CONTENT"):
                _LOGGER.warning("could not read OTEL_CAPTURE_CONTENT (%s); redacting content", problem)
        return config.capture_content
    except Exception as exc:
        # Fail closed: unreadable settings must not let content through.
        _LOGGER.warning("could not read OTEL_CAPTURE_CONTENT (%s); redacting content", exc)
        return False


class RedactingSpanExporter(SpanExporter):
    """A span exporter that hands ``inner`` redacted copies of every span.

    Args:
        inner: the real exporter (OTLP, console, local store...).
        capture_content: keep content (``OTEL_CAPTURE_CONTENT``); ``None`` reads
            OTEL_CAPTURE_CONTENT once, now.
    """

    def __init__(self, inner: SpanExporter, capture_content: bool | None = None) -> None:
        self.inner = inner
        self.capture_content = _capture_setting(capture_content)
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def dropped_spans(self) -> int:
        """Spans left out because redacting them failed (never exported unredacted)."""
        return self._failures

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Redact ``spans`` and export the copies through the inner exporter."""
        cleaned: list[ReadableSpan] = []
        for span in spans:
            try:
                cleaned.append(_redact_span_if_needed(span, self.capture_content))
            except Exception:
                # Better lose a span than leak one: drop it, count it, say so once.
                with self._lock:
                    self._failures += 1
                    first = self._failures == 1
                if first:
                    _LOGGER.warning("could not redact span %r; dropped it", span.name, exc_info=True)
        if not cleaned:
            return SpanExportResult.SUCCESS
        return self.inner.export(cleaned)

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return self.inner.force_flush(timeout_millis)


_STANDARD_RECORD_KEYS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class RedactingLogFilter(logging.Filter):
    """A log filter that redacts the message, its arguments, exception text and ``extra`` fields.

    Add it to a handler (``handler.addFilter(RedactingLogFilter())``): the record
    it lets through has the final message with e-mails and phone numbers
    replaced and no arguments left to re-insert them.

    Args:
        capture_content: keep content; ``None`` reads OTEL_CAPTURE_CONTENT once.
    """

    def __init__(self, capture_content: bool | None = None) -> None:
        super().__init__()
        self.capture_content = _capture_setting(capture_content)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always lets it through."""
        if self.capture_content:
            return True
        try:
            message = record.getMessage()
        except Exception:
            # A broken format string: logging reports it itself when it formats the record.
            return True
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_RECORD_KEYS:
                continue
            if _is_content_key(key):
                record.__dict__[key] = _whole(value)
            elif isinstance(value, str):
                record.__dict__[key] = _redact_string(key, value)
        return True
