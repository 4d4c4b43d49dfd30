"""Tracing for the bots' workflows: node spans, custom spans, handoffs, events, context.

This is the module the tracing guide imports from. Decorate each LangGraph node
and wrap each handoff; everything else (attributes from the state, error
recording, metrics that count every call) follows::

    from ghl_real_estate_ai.observability.workflow_tracing import (
        create_handoff_span, set_handoff_outcome, trace_workflow_node,
    )

    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_intent(state: dict) -> dict:
        return {**state, "current_step": "day_3"}

    with create_handoff_span("lead", "buyer", contact_id, 0.85, "buyer_intent_detected"):
        if not allowed:
            set_handoff_outcome("blocked:cooldown")
        else:
            await execute_handoff(...)

Span names are static (``<bot>.<node>``, ``handoff.<source>_to_<target>``); ids
belong in attributes. A node name that looks like it holds an id is reported
once with a WARNING (see :func:`dynamic_span_name_warnings`).

Context across boundaries: :func:`propagate_trace_context` writes W3C
``traceparent``/``tracestate`` into a metadata dict; work that runs right away
continues it as its parent (:func:`continue_trace_context`), work that runs
days later starts a new trace linked to it (:func:`start_linked_trace`).

When tracing is off every function here is a cheap no-op (spans yielded are
non-recording), so instrumented code never needs an ``if``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import Link, Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ghl_real_estate_ai.observability import _instrument
from ghl_real_estate_ai.observability._instrument import HandoffSpan, WorkflowSpan

__all__ = [
    "HandoffSpan",
    "WorkflowSpan",
    "add_workflow_event",
    "async_workflow_span",
    "continue_trace_context",
    "create_handoff_span",
    "dynamic_span_name_warnings",
    "get_trace_id",
    "link_from_trace_context",
    "propagate_trace_context",
    "set_handoff_outcome",
    "start_linked_trace",
    "trace_workflow_node",
    "workflow_span",
]

F = TypeVar("F", bound=Callable[..., Any])

# W3C Trace Context only (traceparent + tracestate), whatever OTEL_PROPAGATORS says:
# the carrier crosses our own queues and database rows, not a third party's.
_PROPAGATOR = TraceContextTextMapPropagator()


def trace_workflow_node(bot_type: str, node_name: str) -> Callable[[F], F]:
    """Trace every call of a workflow node as the span ``<bot_type>.<node_name>``.

    Works on coroutines, plain functions, methods and (async) generators. The
    state is the first Mapping argument, positional or keyword; from it come
    ``workflow.contact_id`` (``contact_id``, ``lead_id``, ``buyer_id`` or
    ``seller_id``), ``workflow.current_step`` and ``workflow.temperature``, the
    last two updated from the returned Mapping when it sets them. Every call
    gets ``workflow.success`` and ``workflow.duration_ms`` and is counted in
    the ``jorge.workflow.node.duration`` histogram, sampled or not. An
    exception is recorded once (one ``exception`` event, ERROR status) and
    re-raised.

    Args:
        bot_type: static bot name, e.g. ``lead_bot``.
        node_name: static node name, e.g. ``analyze_intent``; never an id.

    Returns:
        The decorator.

    Raises:
        ValueError: ``bot_type`` or ``node_name`` is empty or not a string.
    """
    return _instrument.trace_node(bot_type, node_name)


def workflow_span(bot_type: str, name: str, contact_id: str | None = None, **attributes: Any) -> WorkflowSpan:
    """A custom span ``<bot_type>.<name>`` for synchronous code: ``with workflow_span(...) as span``.

    Args:
        bot_type: e.g. ``seller_bot``.
        name: static operation name, e.g. ``calculate_frs``.
        contact_id: set as ``workflow.contact_id`` when given.
        **attributes: extra attributes, keys used as given (``**{"seller.frs_score": 80}``);
            ``None`` values are left out.

    Returns:
        A context manager yielding the span (non-recording when tracing is off). An
        exception inside is recorded once, sets ERROR and propagates.
    """
    return WorkflowSpan(bot_type, name, contact_id, attributes)


def async_workflow_span(
    bot_type: str, name: str, contact_id: str | None = None, **attributes: Any
) -> WorkflowSpan:
    """Like :func:`workflow_span`, for ``async with async_workflow_span(...) as span``.

    Args:
        bot_type: e.g. ``seller_bot``.
        name: static operation name, e.g. ``calculate_frs``.
        contact_id: set as ``workflow.contact_id`` when given.
        **attributes: extra attributes, keys used as given.

    Returns:
        An async context manager yielding the span.
    """
    return WorkflowSpan(bot_type, name, contact_id, attributes)


def create_handoff_span(
    source_bot: str, target_bot: str, contact_id: str, confidence: float, reason: str
) -> HandoffSpan:
    """The span of a cross-bot handoff: ``with create_handoff_span(...):`` around the handoff.

    The span ``handoff.<source>_to_<target>`` (a ``_bot`` suffix is dropped from
    the names: ``handoff.lead_to_buyer``) is current inside the block, so the
    handoff's own spans and HTTP calls nest under it, and it ends on every way
    out: normal exit, exception, ``return``, a closed generator. It carries the
    five ``handoff.*`` attributes and ``handoff.outcome``: ``executed`` on normal
    exit, ``failed:<ExceptionType>`` (and ERROR) when the block raises, or what
    :func:`set_handoff_outcome` set inside the block (``blocked:<reason>``). The
    ``jorge.handoff.count``/``jorge.handoff.duration`` metrics record every block.

    Args:
        source_bot: ``lead``, ``buyer`` or ``seller``.
        target_bot: ``buyer``, ``seller``, ``lead`` or ``human``.
        contact_id: the contact handed over.
        confidence: the score (0-1) that triggered the handoff.
        reason: a short static reason code, e.g. ``buyer_intent_detected``.

    Returns:
        A synchronous context manager (usable around ``await``) yielding the span.
    """
    return HandoffSpan(source_bot, target_bot, contact_id, confidence, reason)


def set_handoff_outcome(outcome: str) -> bool:
    """Set ``handoff.outcome`` of the handoff block the caller is in.

    Call it from anywhere inside ``with create_handoff_span(...)`` (for example
    deep in the handoff service) when a safeguard refuses the handoff:
    ``set_handoff_outcome("blocked:cooldown")``. An exception leaving the block
    still wins (``failed:<ExceptionType>``).

    Args:
        outcome: ``executed``, ``blocked:<reason>`` or ``failed:<what>``.

    Returns:
        True when a handoff block was current; False (nothing set) outside one.

    Raises:
        ValueError: ``outcome`` has none of the three forms.
    """
    return _instrument.set_handoff_outcome(outcome)


def add_workflow_event(name: str, **attributes: Any) -> None:
    """Add an event (a timestamped milestone) to the current span.

    Args:
        name: static event name, e.g. ``intent_detected``.
        **attributes: event attributes; ``None`` values are left out.
    """
    span = trace_api.get_current_span()
    if not span.is_recording():
        return
    span.add_event(name, {key: value for key, value in attributes.items() if value is not None})


def get_trace_id() -> str | None:
    """The current trace id as 32 lowercase hex digits, or ``None`` outside a span."""
    span_context = trace_api.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}"


def propagate_trace_context(metadata: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write the current trace context (W3C ``traceparent``/``tracestate``) into ``metadata``.

    Call it before handing work to another task, queue or process; the receiver
    restores it with :func:`continue_trace_context` or :func:`start_linked_trace`.

    Args:
        metadata: a dict that travels with the work; changed in place.

    Returns:
        The same dict (unchanged outside a span).

    Raises:
        TypeError: ``metadata`` is not a mutable mapping.
    """
    if not isinstance(metadata, MutableMapping):
        raise TypeError(
            f"propagate_trace_context needs a dict to write into, got {type(metadata).__name__} "
            f"{metadata!r}: pass e.g. {{'contact_id': contact_id}}"
        )
    _PROPAGATOR.inject(metadata)
    return metadata


def _extract(metadata: Any) -> context_api.Context:
    if not isinstance(metadata, dict | MutableMapping):
        return context_api.Context()
    return _PROPAGATOR.extract(metadata, context=context_api.Context())


@contextmanager
def continue_trace_context(metadata: Any) -> Iterator[None]:
    """Make the trace context in ``metadata`` the parent of spans started inside the block.

    For work that runs right away (a task, a worker picking up a queue item):
    its spans join the original trace. Metadata without a valid ``traceparent``
    changes nothing.

    Args:
        metadata: a dict filled by :func:`propagate_trace_context`.
    """
    ctx = _extract(metadata)
    if not trace_api.get_current_span(ctx).get_span_context().is_valid:
        yield
        return
    token = context_api.attach(ctx)
    try:
        yield
    finally:
        context_api.detach(token)


def link_from_trace_context(metadata: Any) -> list[Link]:
    """A span link to the trace context in ``metadata`` (empty when there is none).

    Args:
        metadata: a dict filled by :func:`propagate_trace_context`.

    Returns:
        ``[Link(...)]`` to pass as ``links=`` when starting a new root span.
    """
    span_context = trace_api.get_current_span(_extract(metadata)).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


@contextmanager
def start_linked_trace(name: str, metadata: Any, **attributes: Any) -> Iterator[Span]:
    """Start a NEW trace whose root span links to the trace in ``metadata``.

    For work that runs much later (a day-7 follow-up): a link keeps the two
    traces connected without a 7-day trace. The span is current inside the
    block; an exception is recorded once, sets ERROR and propagates.

    Args:
        name: static span name, e.g. ``followup.day_7``.
        metadata: a dict filled by :func:`propagate_trace_context` (may hold none).
        **attributes: attributes of the root span; ``None`` values are left out.

    Yields:
        The new root span.
    """
    tracer = _instrument.active_tracer()
    if tracer is None:
        yield trace_api.INVALID_SPAN
        return
    span = tracer.start_span(
        name,
        context=context_api.Context(),
        links=link_from_trace_context(metadata),
        attributes={key: value for key, value in attributes.items() if value is not None},
    )
    token = context_api.attach(trace_api.set_span_in_context(span))
    try:
        yield span
    except Exception as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        context_api.detach(token)
        span.end()


def dynamic_span_name_warnings() -> int:
    """How many dynamic (id-holding) span names were detected in this process.

    Each distinct name pattern is also logged once as a WARNING on the
    ``ghl_real_estate_ai.observability.workflow_tracing`` logger.
    """
    return _instrument.dynamic_span_name_warnings()
