"""Conversation identity on every span, and the journey on each trace's root span.

Two things a trace list needs that single spans do not give (issue 12):

* **Sessions.** Every span of a conversation carries ``session.id``, ``user.id`` and
  ``gen_ai.conversation.id`` (the OpenInference and GenAI keys that Phoenix and
  Langfuse group session views by). One session per lead: the GHL contact id. Call
  :func:`start_session` on the span where the contact becomes known (the webhook's
  SERVER span); spans started under it inherit the keys, and a node or handoff span
  that names its contact (``workflow.contact_id``, ``handoff.contact_id``) starts
  one by itself, so follow-up traces carry it too.
* **The journey.** The root span of each trace gets ``journey.final_bot``,
  ``journey.handoff_route``, ``journey.outcome`` and ``journey.temperature``,
  derived from the trace contract's own attributes as the spans below it end, so
  a list of traces shows what each one did and a tag search finds them
  (``journey.handoff_route=lead_to_buyer``).

Both are done by :class:`ConversationSpanProcessor`, which the set-up adds to the
tracer provider ahead of the exporters (and :func:`~.testing.capture_spans` to its own)::

    provider.add_span_processor(ConversationSpanProcessor())
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor

from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability._fastspan import (
    attributes_of,
    current_span,
    events_of,
    has_events,
    put_session,
)

__all__ = ["ConversationSpanProcessor", "format_journey", "journey_of", "start_session"]

_CONTACT_KEYS: Final = (attr.WORKFLOW_CONTACT_ID, attr.HANDOFF_CONTACT_ID)
_MAX_OPEN_ROOTS: Final = 4096
# The attributes an ending span can move its root's journey with (besides opt-out/in events).
_JOURNEY_INPUTS: Final = (attr.WORKFLOW_BOT_TYPE, attr.WORKFLOW_TEMPERATURE, attr.HANDOFF_OUTCOME)
# How strongly an outcome holds against a later one (a failure is never hidden by a later success).
_RANK: Final = {"completed": 0, "blocked": 1, "handed_off": 2, "escalated": 3, "opted": 4, "failed": 5}


def start_session(span: trace_api.Span, contact_id: str | None) -> None:
    """Mark ``span`` (and every span started under it from now on) as part of ``contact_id``'s conversation.

    Args:
        span: usually the request's SERVER span, once the contact is known.
        contact_id: the GHL contact id; ``None`` or empty does nothing.
    """
    if contact_id and span.is_recording():
        span.set_attributes(dict.fromkeys(attr.SESSION_ATTRIBUTES, contact_id))


def journey_of(attributes: Mapping[str, Any]) -> dict[str, str]:
    """The ``journey.*`` attributes of a root span, keyed without the prefix (``final_bot``...)."""
    return {key.split(".", 1)[1]: str(attributes[key]) for key in attr.JOURNEY_KEYS if key in attributes}


def format_journey(journey: Mapping[str, str]) -> str:
    """One short line for a list: ``lead→buyer handed_off hot`` or ``seller completed warm``."""
    if not journey:
        return ""
    route = journey.get("handoff_route", "none")
    if route not in ("", "none") and "_to_" in route:
        source, target = route.split("_to_", 1)
        who = f"{source}→{target}"
    else:
        who = journey.get("final_bot", "").removesuffix("_bot")
    parts = [who, journey.get("outcome", ""), journey.get("temperature", "")]
    return " ".join(part for part in parts if part)


def _repeats(attributes: Mapping[str, Any], current: Mapping[str, Any], root: _Root) -> bool:
    """Whether an ending span without events only repeats the bot and temperature its root shows.

    Most node spans do: :meth:`ConversationSpanProcessor._journey_updates` would then
    change neither the root's attributes nor its rank, so it is not run for them.
    """
    temperature = attributes.get(attr.WORKFLOW_TEMPERATURE)
    return (
        root.rank >= 0
        and current.get(attr.JOURNEY_FINAL_BOT) == attributes.get(attr.WORKFLOW_BOT_TYPE)
        and attributes.get(attr.WORKFLOW_SUCCESS) is not False
        and attr.HANDOFF_OUTCOME not in attributes
        and (
            current.get(attr.JOURNEY_TEMPERATURE) == temperature
            or not isinstance(temperature, str)
            or not temperature
        )
    )


class _Root:
    __slots__ = ("rank", "span", "span_id")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.span_id = span.context.span_id
        self.rank = -1


class ConversationSpanProcessor(SpanProcessor):
    """Puts the session keys on every span of a conversation and the journey on each root span.

    Runs in ``on_start`` and ``on_end`` of the spans of this process; it exports
    nothing. Roots still open are tracked by trace id (at most 4096 at once, the
    oldest forgotten first). Both run for every span on the app's thread, so they
    read the SDK span's attributes and events without its copies (``_fastspan``).
    """

    def __init__(self) -> None:
        self._roots: dict[int, _Root] = {}
        self._lock = threading.Lock()
        self._session: tuple[object, dict[str, Any]] = (None, {})

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        parent = current_span(parent_context)
        _, _, remote, _, _, valid = parent.get_span_context()  # a SpanContext is a tuple
        if not valid or remote:
            with self._lock:
                if len(self._roots) >= _MAX_OPEN_ROOTS:
                    self._roots.pop(next(iter(self._roots)))
                self._roots[span.context.trace_id] = _Root(span)
            session = None
        else:
            session = attributes_of(parent).get(attr.SESSION_ID)
        if session is None:
            own = attributes_of(span)
            if own:
                session = next((own[key] for key in _CONTACT_KEYS if own.get(key)), None)
        if session is not None:
            # The value is one of this provider's stored attributes: already clean. Spans of
            # one conversation share the (never modified) mapping of their session keys.
            keys = self._session
            if keys[0] != session or type(keys[0]) is not type(session):
                keys = self._session = (session, dict.fromkeys(attr.SESSION_ATTRIBUTES, session))
            put_session(span, keys[1])

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        trace_id, span_id = context[0], context[1]  # a SpanContext is a tuple: read without its properties
        root = self._roots.get(trace_id)
        if root is None:
            return
        if root.span_id == span_id:
            with self._lock:
                self._roots.pop(trace_id, None)
            return
        attributes = attributes_of(span)
        # Most spans (store, cache, GHL calls) say nothing about the journey: leave at once.
        if (
            attributes.keys().isdisjoint(_JOURNEY_INPUTS)
            and not has_events(span)
            and not has_events(root.span)
        ):
            return
        if not root.span.is_recording():
            return
        events = (*events_of(span), *events_of(root.span))
        current = attributes_of(root.span)
        if not events and _repeats(attributes, current, root):
            return
        updates = self._journey_updates(attributes, events, root)
        # Node after node repeats the same bot and temperature: only what changed is set.
        changed = {key: value for key, value in updates.items() if current.get(key) != value}
        if changed:
            root.span.set_attributes(changed)

    @staticmethod
    def _journey_updates(
        attributes: Mapping[str, Any], events: tuple[Event, ...], root: _Root
    ) -> dict[str, str]:
        updates: dict[str, str] = {}
        outcome: str | None = None
        bot = attributes.get(attr.WORKFLOW_BOT_TYPE)
        if isinstance(bot, str) and bot.endswith("_bot"):
            updates[attr.JOURNEY_FINAL_BOT] = bot
            if root.rank < 0:
                outcome = "completed"
            if attributes.get(attr.WORKFLOW_SUCCESS) is False:
                outcome = "failed"
        temperature = attributes.get(attr.WORKFLOW_TEMPERATURE)
        if isinstance(temperature, str) and temperature:
            updates[attr.JOURNEY_TEMPERATURE] = temperature
        handoff = attributes.get(attr.HANDOFF_OUTCOME)
        if isinstance(handoff, str):
            source = attributes.get(attr.HANDOFF_SOURCE_BOT)
            target = attributes.get(attr.HANDOFF_TARGET_BOT)
            if handoff == attr.OUTCOME_EXECUTED:
                updates[attr.JOURNEY_HANDOFF_ROUTE] = f"{source}_to_{target}"
                outcome = "escalated" if target == "human" else "handed_off"
            elif handoff.startswith("blocked"):
                outcome = handoff
        # Opt-out/in is an event, maybe on the root itself (seen when a span under it ends).
        for event in events:
            if event.name in ("contact_opted_out", "contact_opted_in"):
                outcome = event.name.removeprefix("contact_")
        if root.rank < 0 and (updates or outcome is not None):
            updates.setdefault(attr.JOURNEY_HANDOFF_ROUTE, "none")
        if outcome is not None:
            rank = _RANK.get("opted" if outcome.startswith("opted") else outcome.split(":", 1)[0], 0)
            if rank >= root.rank:
                root.rank = rank
                updates[attr.JOURNEY_OUTCOME] = outcome
        elif updates and root.rank < 0:
            root.rank = 0
        return updates

    def shutdown(self) -> None:
        with self._lock:
            self._roots.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
