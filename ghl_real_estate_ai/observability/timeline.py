"""A contact's timeline, built from the traces of its session (issue 12).

Every span of a conversation carries ``session.id`` (the GHL contact id, see
:mod:`.journey`), so one tag search finds all of a lead's traces: each inbound
message, the reply sent, the scores computed, the handoffs, and the follow-up
traces that fired later (linked to the trace that scheduled them)::

    for item in contact_timeline(reader, "abc123xyz"):
        print(item.title, [entry.text for entry in item.entries])

Message text appears only when content capture put it in the spans
(``OTEL_CAPTURE_CONTENT=true``); otherwise the timeline says what happened, not what was said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.query import SpanRecord, TraceQuery, summarize_trace

__all__ = ["TimelineEntry", "TimelineTrace", "contact_timeline", "timeline_of_trace"]

_WEBHOOK_PREFIX = "POST /api/v1/webhooks/ghl"
_MESSAGE_KEYS = ("message.body", "webhook.body", "gen_ai.input.messages")
_REPLY_TEMPLATE = "/conversations/messages"


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened, at a time: ``kind`` is inbound, reply, score, handoff or event."""

    time_ns: int
    kind: str
    text: str


@dataclass(frozen=True)
class TimelineTrace:
    """One trace of the contact: a webhook or a follow-up, with what happened in it, in order."""

    trace_id: str
    start_ns: int
    title: str
    journey: dict[str, str]
    linked_from: tuple[str, ...]
    """Trace ids this one links to: the trace that scheduled a follow-up."""
    entries: list[TimelineEntry] = field(default_factory=list)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def timeline_of_trace(spans: Sequence[SpanRecord]) -> TimelineTrace:
    """What one trace did for its contact, in time order."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    summary = summarize_trace(ordered)
    ids = {s.span_id for s in ordered}
    roots = [s for s in ordered if s.parent_span_id not in ids]
    webhook = next((s for s in ordered if s.name.startswith(_WEBHOOK_PREFIX)), None)
    followup = next((s for s in roots if "followup.step" in s.attributes), None)
    entries: list[TimelineEntry] = []
    if followup is not None:
        title = f"follow-up {followup.attributes['followup.step']}"
        outcome = followup.attributes.get("followup.outcome")
        if outcome is not None:
            entries.append(TimelineEntry(followup.start_ns, "event", f"follow-up {outcome}"))
    elif webhook is not None:
        title = "inbound message"
        said = next((str(webhook.attributes[k]) for k in _MESSAGE_KEYS if k in webhook.attributes), None)
        kind = webhook.attributes.get("webhook.event_type", "message")
        outcome = webhook.attributes.get("webhook.outcome")
        text = said if said is not None else f"{kind} received" + (f" ({outcome})" if outcome else "")
        entries.append(TimelineEntry(webhook.start_ns, "inbound", text))
    else:
        title = summary.root_name
    for span in ordered:
        scores = {k: v for k, v in span.attributes.items() if k.endswith("_score")}
        if scores:
            text = ", ".join(
                f"{k.replace('_score', '').replace('.', ' ')} {_number(v)}" for k, v in scores.items()
            )
            entries.append(TimelineEntry(span.end_ns, "score", text))
        outcome = span.attributes.get(attr.HANDOFF_OUTCOME)
        if outcome is not None:
            source = span.attributes.get(attr.HANDOFF_SOURCE_BOT)
            target = span.attributes.get(attr.HANDOFF_TARGET_BOT)
            entries.append(TimelineEntry(span.start_ns, "handoff", f"{source} → {target}: {outcome}"))
        if span.kind == "CLIENT" and span.attributes.get("url.template") == _REPLY_TEMPLATE:
            status = span.attributes.get("http.response.status_code", span.attributes.get("http.status_code"))
            entries.append(
                TimelineEntry(span.start_ns, "reply", "reply sent" + (f" (HTTP {status})" if status else ""))
            )
        for event in span.events:
            if event.name.startswith("contact_"):
                entries.append(
                    TimelineEntry(event.timestamp_ns, "event", event.name.removeprefix("contact_"))
                )
    entries.sort(key=lambda e: e.time_ns)
    linked = tuple(dict.fromkeys(link.trace_id for root in roots for link in root.links))
    return TimelineTrace(summary.trace_id, summary.start_ns, title, summary.journey, linked, entries)


def contact_timeline(reader: TraceQuery, contact_id: str, *, limit: int = 50) -> list[TimelineTrace]:
    """The contact's traces, oldest first (at most ``limit``, the most recent ones).

    Traces are found by ``session.id`` and, for traces written before sessions
    existed, by ``workflow.contact_id``.

    Raises:
        TraceQueryError: the backend cannot answer, or ``limit`` is below 1.
    """
    found: dict[str, int] = {}
    for key in (attr.SESSION_ID, attr.WORKFLOW_CONTACT_ID):
        for summary in reader.find_traces(tags={key: contact_id}, limit=limit, order="time"):
            found[summary.trace_id] = summary.start_ns
    newest = sorted(found, key=lambda trace_id: found[trace_id])[-limit:]
    timeline = []
    for trace_id in newest:
        spans = reader.get_trace(trace_id)
        if spans:
            timeline.append(timeline_of_trace(spans))
    return timeline
