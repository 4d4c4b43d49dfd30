"""A shorter path through the SDK for the spans a webhook makes (issue 14).

Internal. The SDK's ``Tracer.start_span`` looks the parent up four times (itself,
the parent-based sampler twice, the conversation processor once more), and every
attribute set goes through ``_clean_attribute_value``: two abstract-class checks
for the mapping, one call per value, a lock per key. A webhook makes 19 spans with
about 300 attribute values, all of them plain strings, numbers and booleans.

:class:`FastTracerProvider` is the SDK's ``TracerProvider`` whose tracers take a
shorter path for the common case and the SDK's own for everything else:

* a span under a valid parent, with the default parent-based sampler and no links,
  is started with the parent looked up once and the sampler's decision taken from
  the parent's flags (what ``ParentBased`` with its default delegates decides);
  a root span without links asks the sampler as the SDK does and is built the same
  way; links, a child under another sampler or a disabled tracer go through the SDK;
* attribute values that are already clean (``str`` within the length limit,
  ``bool``, ``int``, ``float``) are stored as they are, and lists or tuples of them
  as a tuple; anything else is cleaned by the SDK's own function, and a mapping
  with a key that is not a non-empty ``str`` goes through the SDK's path whole (its
  warnings and dropped counts);
* a span's event and link lists are made with its first event or link.

The spans are the SDK's ``Span`` (a subclass adding nothing but the shorter
methods; its event and link lists are empty tuples until then): processors and
exporters get the same ``ReadableSpan`` with the same names, attributes, events,
ids and flags. The path relies on a few SDK internals
(``BoundedAttributes._dict``, the tracer's limits and scope); :func:`available`
checks them once, and without them the provider is the SDK's, unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from time import time_ns
from typing import Any, Final, cast

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import (
    Event,
    EventBase,
    ReadableSpan,
    Span,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
    TracerProvider,
    _Span,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, Sampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState
from opentelemetry.util import types

__all__ = [
    "READABLE_FIELDS",
    "FastTracerProvider",
    "ReservableIds",
    "attach_span",
    "attributes_of",
    "available",
    "current_sampling",
    "current_span",
    "detach",
    "events_of",
    "has_events",
    "links_of",
    "own_fields",
    "put_clean",
    "put_session",
]

# The SDK's own logger, so a warning about an ended span reads as it always did.
_sdk_logger = logging.getLogger("opentelemetry.sdk.trace")
_get_current_span = trace_api.get_current_span
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", None)
# A new span's flags by (sampled, random trace id), made once instead of per span.
_FLAGS: Final = {
    (sampled, random): TraceFlags((TraceFlags.SAMPLED if sampled else 0) | ((_RANDOM or 0) if random else 0))
    for sampled in (False, True)
    for random in (False, True)
}
_MAX_TRACE_ID: Final = 2**128 - 1
_MAX_SPAN_ID: Final = 2**64 - 1
_new_tuple = tuple.__new__


# Built here field by field instead of through the SDK's constructors (a span's start and
# end run a hundred lines of them); _check() compares these field sets with what the
# installed SDK's constructors set, and any difference turns the shorter path off.
_ATTRIBUTE_FIELDS: Final = frozenset(("_dict", "maxlen", "dropped", "max_value_len", "_lock", "_immutable"))
_LIST_FIELDS: Final = frozenset(("dropped", "_dq", "_lock"))
_LIST_APPEND_NAMES: Final = ("_lock", "_dq", "maxlen", "len", "dropped", "append")  # what _append mirrors
_EVENT_FIELDS: Final = frozenset(("_name", "_timestamp", "_attributes"))
READABLE_FIELDS: Final = frozenset(
    (
        "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent",
        "_start_time", "_end_time", "_attributes", "_events", "_links", "_resource", "_status",
    )
)  # fmt: skip
_SPAN_FIELDS: Final = READABLE_FIELDS | {
    "_sampler", "_trace_config", "_record_exception", "_set_status_on_exception", "_span_processor",
    "_limits", "_lock", "_record_end_metrics",
}  # fmt: skip
_new_object = object.__new__
_new_lock = threading.Lock


def _bounded_attributes(
    maxlen: int | None, max_value_len: int | None, items: Mapping[str, Any] | None = None
) -> BoundedAttributes:
    """``BoundedAttributes(maxlen, None, immutable=False, max_value_len=max_value_len)``, built directly.

    ``items`` (already clean) are stored as :func:`put_clean` would store them.
    """
    attributes: BoundedAttributes = _new_object(BoundedAttributes)
    fits = not items or maxlen is None or len(items) <= maxlen
    attributes.__dict__ = {
        "_dict": dict(items) if items and fits else {},
        "maxlen": maxlen,
        "dropped": 0,
        "max_value_len": max_value_len,
        "_lock": _new_lock(),
        "_immutable": False,
    }
    if not fits:
        put_clean(attributes, items)  # type: ignore[arg-type]  # past maxlen: the oldest dropped, counted
    return attributes


def _bounded_list(maxlen: int | None) -> BoundedList[Any]:
    """``BoundedList(maxlen)``, built directly."""
    bounded: BoundedList[Any] = _new_object(BoundedList)
    bounded.__dict__ = {"dropped": 0, "_dq": deque(maxlen=maxlen), "_lock": _new_lock()}
    return bounded


def _context_var() -> ContextVar[Context] | None:
    """The ContextVar the API's runtime context keeps the current context in (None for another runtime)."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and type(variable) is ContextVar:
        return variable
    return None


_CONTEXT_VAR: Final = _context_var()


def _reads_its_tuple(probe: SpanContext) -> bool:
    """Whether a SpanContext's properties read the tuple positions this module reads directly."""
    return (
        (probe.trace_id, probe.span_id, probe.is_remote, probe.trace_flags, probe.trace_state, probe.is_valid)
        == tuple(probe)
        and probe.trace_flags.random_trace_id
        and not probe.trace_flags.sampled
    )


def _check() -> bool:
    try:
        tracer_fields = ("_span_limits", "_instrumentation_scope", "_tracer_config", "_tracer_metrics")
        init = Tracer.__init__.__code__
        reference = _Span("probe", trace_api.INVALID_SPAN_CONTEXT, limits=SpanLimits())
        return (
            set(vars(BoundedAttributes(4, None, immutable=False))) == _ATTRIBUTE_FIELDS
            and set(vars(_bounded_attributes(4, None))) == _ATTRIBUTE_FIELDS
            and set(vars(BoundedList(1))) == _LIST_FIELDS
            and set(vars(reference)) == _SPAN_FIELDS
            and set(vars(ReadableSpan("probe"))) == READABLE_FIELDS
            and set(vars(Event("probe", None, 1))) == _EVENT_FIELDS
            and BoundedList.append.__code__.co_names == _LIST_APPEND_NAMES
            and type(reference._attributes) is BoundedAttributes
            and type(reference._events) is BoundedList
            and type(reference._links) is BoundedList
            and reference._trace_config is None
            and all(name in init.co_names for name in tracer_fields)
            and _RANDOM is not None
            and hasattr(_Span, "_add_event")
            and hasattr(_Span, "_add_link")
            and "record_end_metrics" in _Span.__init__.__code__.co_varnames
            and hasattr(BoundedAttributes, "_setitem_locked")
            and hasattr(SynchronousMultiSpanProcessor, "_on_ending")
            and hasattr(SpanProcessor, "_on_ending")
            and _CONTEXT_VAR is not None
            # A SpanContext is the tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid).
            and tuple(SpanContext(1, 2, True, _FLAGS[True, False], DEFAULT_TRACE_STATE))
            == (1, 2, True, TraceFlags.SAMPLED, DEFAULT_TRACE_STATE, True)
            and _reads_its_tuple(
                _new_tuple(SpanContext, (3, 4, False, _FLAGS[False, True], DEFAULT_TRACE_STATE, True))
            )
            and type(DEFAULT_TRACE_STATE) is TraceState
        )
    except Exception:  # any surprise: the SDK's path
        return False


_AVAILABLE = _check()
_UNSET_STATUS: Final = ReadableSpan("probe").status


def available() -> bool:
    """True when the installed SDK has the internals the shorter path relies on."""
    return _AVAILABLE


_SCALARS: Final = frozenset((str, bool, int, float))
_STR: Final = frozenset((str,))


def _clean_mapping(attributes: Mapping[str, Any], max_len: int | None) -> Mapping[str, Any] | None:
    """``attributes`` as the SDK would store them, or None when a key needs the SDK's path.

    The common case (every key a non-empty ``str``, every value a short ``str``, a
    ``bool``, an ``int`` or a ``float``) is checked in C and gives ``attributes`` back.
    """
    if (
        _SCALARS.issuperset(map(type, attributes.values()))
        and _STR.issuperset(map(type, attributes))
        and "" not in attributes
        and (max_len is None or not any(type(v) is str and len(v) > max_len for v in attributes.values()))
    ):
        return attributes
    cleaned: dict[str, Any] = {}
    for key, value in attributes.items():
        if type(key) is not str or not key:
            return None
        kind = type(value)
        if kind is str:
            if max_len is not None and len(value) > max_len:
                value = _clean_attribute_value(value, max_len)
        elif kind is not bool and kind is not int and kind is not float:
            value = _clean_sequence(value, max_len)
        cleaned[key] = value
    return cleaned


def _clean_sequence(value: Any, max_len: int | None) -> Any:
    """A list or tuple of clean scalars as the SDK stores it (a tuple); anything else through the SDK."""
    kind = type(value)
    if (
        (kind is list or kind is tuple)
        and _SCALARS.issuperset(map(type, value))
        and (max_len is None or not any(type(v) is str and len(v) > max_len for v in value))
    ):
        return value if kind is tuple else tuple(value)
    return _clean_attribute_value(value, max_len)


def put_clean(attributes: BoundedAttributes, items: Mapping[str, Any]) -> None:
    """Store already clean attributes, as ``BoundedAttributes`` stores ones it cleaned.

    A key set again moves to the end; past ``maxlen`` the oldest are dropped and counted.
    """
    maxlen = attributes.maxlen
    with attributes._lock:
        stored = attributes._dict
        if maxlen is not None and len(stored) + len(items) > maxlen:
            for key, value in items.items():
                attributes._setitem_locked(key, value)
            return
        if stored and not stored.keys().isdisjoint(items):
            for key in stored.keys() & items.keys():
                del stored[key]
        stored.update(items)


class _FastSpan(_Span):
    """The SDK's span with attribute setters that skip cleaning what is already clean."""

    _attributes: BoundedAttributes  # what Span.__init__ stores

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        items = _clean_mapping(attributes, self._limits.max_span_attribute_length)
        if items is None or self._attributes.maxlen == 0:
            super().set_attributes(attributes)
            return
        with self._lock:
            if self._end_time is not None:
                _sdk_logger.warning("Setting attribute on ended span.")
                return
            put_clean(self._attributes, items)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        kind = type(value)
        if kind is str:
            max_len = self._limits.max_span_attribute_length
            clean = max_len is None or len(value) <= max_len  # type: ignore[arg-type]
        elif kind is bool or kind is int or kind is float:
            clean = True
        elif kind is list or kind is tuple:
            value = _clean_sequence(value, self._limits.max_span_attribute_length)
            clean = True
        else:
            clean = False
        stored = self._attributes
        if not clean or type(key) is not str or not key or stored.maxlen == 0:
            super().set_attribute(key, value)
            return
        with self._lock:
            if self._end_time is not None:
                _sdk_logger.warning("Setting attribute on ended span.")
                return
            with stored._lock:
                found = stored._dict
                if key in found:
                    del found[key]
                elif stored.maxlen is not None and len(found) >= stored.maxlen:
                    stored._setitem_locked(key, value)  # full: the SDK drops the oldest and counts it
                    return
                found[key] = value

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # the SDK's casts it: a call per look-up

    def end(self, end_time: int | None = None) -> None:
        """The SDK's ``end``, calling only the processors that implement ``_on_ending`` and ``on_end``."""
        with self._lock:
            if self._start_time is None:
                raise RuntimeError("Calling end() on a not started span.")
            if self._end_time is not None:
                _sdk_logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            self._attributes._immutable = True
        if self._record_end_metrics:
            self._record_end_metrics()
        processor = self._span_processor
        if type(processor) is not _Processors:
            processor._on_ending(self)
            processor.on_end(self._readable_span())
            return
        for on_ending in processor._endings:
            on_ending(self)
        if processor._ends:
            readable = self._readable_span()
            for on_end in processor._ends:
                on_end(readable)

    def _add_event(self, event: EventBase) -> None:
        self._append("_events", self._limits.max_events, event, "_add_event")

    def _add_link(self, link: Link) -> None:
        self._append("_links", self._limits.max_links, link, "_add_link")

    def _append(self, field: str, maxlen: int | None, item: Any, caller: str) -> None:
        """What the SDK's ``_add_event``/``_add_link`` do, making the list on the first item."""
        with self._lock:
            if self._end_time is None:
                stored = self.__dict__[field]
                if type(stored) is tuple:
                    stored = self.__dict__[field] = _bounded_list(maxlen)
                queue = stored._dq  # BoundedList.append, under the span's lock like every writer
                if queue.maxlen is not None and len(queue) == queue.maxlen:
                    stored.dropped += 1
                queue.append(item)
                return
        _sdk_logger.warning("Tried calling %s on an ended span.", caller)

    def _readable_span(self) -> ReadableSpan:
        readable: ReadableSpan = _new_object(ReadableSpan)
        readable.__dict__ = {
            "_name": self._name,
            "_context": self._context,
            "_kind": self._kind,
            "_instrumentation_info": self._instrumentation_info,
            "_instrumentation_scope": self._instrumentation_scope,
            "_parent": self._parent,
            "_start_time": self._start_time,
            "_end_time": self._end_time,
            "_attributes": self._attributes,
            "_events": self._events,
            "_links": self._links,
            "_resource": self._resource,
            "_status": self._status,
        }
        return readable

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        limits = self._limits
        items = _clean_mapping(attributes, limits.max_attribute_length) if attributes else None
        if (attributes and items is None) or limits.max_event_attributes == 0:
            super().add_event(name, attributes, timestamp)
            return
        bounded = _bounded_attributes(limits.max_event_attributes, limits.max_attribute_length, items)
        bounded._immutable = True
        event: Event = _new_object(Event)  # Event(name, bounded, timestamp) without its two constructors
        event.__dict__ = {
            "_name": name,
            "_timestamp": timestamp if timestamp is not None else time_ns(),
            "_attributes": bounded,
        }
        self._append("_events", limits.max_events, event, "_add_event")


# The span types current_span() hands back without the API's abstract-class check.
_SPAN_TYPES: Final = frozenset((_FastSpan, _Span, NonRecordingSpan))
_current_context = _CONTEXT_VAR.get if _CONTEXT_VAR is not None else context_api.get_current


def current_span(context: Context | None = None) -> trace_api.Span:
    """``trace.get_current_span(context)``, in one step for the span types this provider makes."""
    span = (_current_context() if context is None else context).get(_SPAN_KEY)
    if type(span) in _SPAN_TYPES:
        return span  # type: ignore[return-value]
    return trace_api.INVALID_SPAN if span is None else _get_current_span(context)


def current_sampling() -> bool | None:
    """Whether the current span is sampled; None when there is no valid current span."""
    span_context = current_span().get_span_context()
    if type(span_context) is SpanContext:
        _, _, _, flags, _, valid = span_context
        return flags & TraceFlags.SAMPLED != 0 if valid else None
    return bool(span_context.trace_flags.sampled) if span_context.is_valid else None


def attach_span(span: trace_api.Span) -> Token[Context]:
    """``context.attach(trace.set_span_in_context(span))``: make ``span`` current; give the token back."""
    if _CONTEXT_VAR is None:
        return context_api.attach(trace_api.set_span_in_context(span))
    values = _CONTEXT_VAR.get().copy()
    values[_SPAN_KEY] = span
    return _CONTEXT_VAR.set(Context(values))


def detach(token: Token[Context]) -> None:
    """``context.detach(token)``: a token that cannot be reset is logged, as the API does."""
    if _CONTEXT_VAR is None:
        context_api.detach(token)
        return
    try:
        _CONTEXT_VAR.reset(token)
    except Exception:
        logging.getLogger("opentelemetry.context").exception("Failed to detach context")


def _fast_children(sampler: Sampler) -> bool:
    """True for ``ParentBased(any root)`` with the default delegates: a child follows its parent."""
    return (
        isinstance(sampler, ParentBased)
        and getattr(sampler, "_remote_parent_sampled", None) is ALWAYS_ON
        and getattr(sampler, "_local_parent_sampled", None) is ALWAYS_ON
        and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
        and getattr(sampler, "_local_parent_not_sampled", None) is ALWAYS_OFF
    )


class _FastTracer(Tracer):
    """The SDK's tracer with a shorter start for children of a valid parent (see the module docstring)."""

    _fast_children = False

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        parent = current_span(context).get_span_context()
        if links or type(parent) is not SpanContext or not self._tracer_config.is_enabled:
            return self._sdk_start(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        # A SpanContext is the tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid).
        trace_id, _, _, parent_flags, trace_state, valid = parent
        if valid and not self._fast_children:
            return self._sdk_start(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        limits = self._span_limits
        if not valid:  # a root: the sampler decides, as in the SDK's start
            trace_id = self.id_generator.generate_trace_id()
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision = result.decision
            sampled = decision is Decision.RECORD_AND_SAMPLE
            recording = sampled or decision is Decision.RECORD_ONLY
            attributes = result.attributes
            trace_state = result.trace_state if result.trace_state is not None else DEFAULT_TRACE_STATE
            random_id = bool(self.id_generator.is_trace_id_random())
            span_parent: SpanContext | None = None
        else:  # a child follows its parent's flags (ParentBased, default delegates)
            recording = sampled = parent_flags & TraceFlags.SAMPLED != 0
            decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
            random_id = parent_flags & _RANDOM != 0  # type: ignore[operator]  # _check(): not None
            span_parent = parent
        items: Mapping[str, Any] | None = None
        if recording and attributes:
            items = _clean_mapping(attributes, limits.max_span_attribute_length)
        span_id = self.id_generator.generate_span_id()
        # What SpanContext(...) builds, without its constructor's frame.
        span_context: SpanContext = _new_tuple(
            SpanContext,
            (
                trace_id,
                span_id,
                False,
                _FLAGS[sampled, random_id],
                trace_state,
                0 < trace_id <= _MAX_TRACE_ID and 0 < span_id <= _MAX_SPAN_ID,
            ),
        )
        record_end_metrics = self._tracer_metrics.start_span(span_parent, decision)
        if not recording:
            return trace_api.NonRecordingSpan(context=span_context)
        if attributes and items is None:  # a key only the SDK's cleaning handles as it should
            sdk_span = _FastSpan(
                name=name,
                context=span_context,
                parent=span_parent,
                sampler=self.sampler,
                resource=self.resource,
                attributes=attributes,
                span_processor=self.span_processor,
                kind=kind,
                links=(),
                instrumentation_info=self.instrumentation_info,
                record_exception=record_exception,
                set_status_on_exception=set_status_on_exception,
                limits=limits,
                instrumentation_scope=self._instrumentation_scope,
                record_end_metrics=record_end_metrics,
            )
            sdk_span.start(start_time=start_time, parent_context=context)
            return sdk_span
        fill = limits.max_span_attributes != 0
        processor = self.span_processor
        span: _FastSpan = _new_object(_FastSpan)
        span.__dict__ = {
            "_name": name,
            "_context": span_context,
            "_kind": kind,
            "_instrumentation_info": self.instrumentation_info,
            "_instrumentation_scope": self._instrumentation_scope,
            "_parent": span_parent,
            "_start_time": start_time if start_time is not None else time_ns(),  # what span.start() sets
            "_end_time": None,
            "_attributes": _bounded_attributes(
                limits.max_span_attributes, limits.max_span_attribute_length, items if fill else None
            ),
            "_events": (),  # made on the first event (_add_event): most spans have none
            "_links": (),  # made on the first add_link(): links at the start take the SDK's path
            "_resource": self.resource,
            "_status": _UNSET_STATUS,
            "_sampler": self.sampler,
            "_trace_config": None,
            "_record_exception": record_exception,
            "_set_status_on_exception": set_status_on_exception,
            "_span_processor": processor,
            "_limits": limits,
            "_lock": _new_lock(),
            "_record_end_metrics": record_end_metrics,
        }
        if items and not fill:
            span._attributes._set_items(dict(items))  # maxlen 0: the SDK counts every one dropped
        # The rest of span.start(): the processors' on_start.
        if type(processor) is _Processors:
            for on_start in processor._starts:
                on_start(span, parent_context=context)
        else:
            processor.on_start(span, parent_context=context)
        return span

    def _sdk_start(
        self,
        name: str,
        context: context_api.Context | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[Link] | None,
        start_time: int | None,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> trace_api.Span:
        """The SDK's start (a root span, links, another sampler); the span still gets the shorter setters."""
        span = super().start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        if type(span) is _Span:
            span.__class__ = _FastSpan
        return span


class _Processors(SynchronousMultiSpanProcessor):
    """The SDK's processor list, calling each processor only for the hooks it implements.

    A span's start, ending and end each call every processor; most implement one
    or two of the three (the batch processor only ``on_end``), and a call to the
    base class's empty method still costs.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._starts: tuple[Any, ...] = ()
        self._endings: tuple[Any, ...] = ()
        self._ends: tuple[Any, ...] = ()

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        with self._lock:
            self._span_processors += (span_processor,)
            every = self._span_processors
            self._starts = tuple(p.on_start for p in every if type(p).on_start is not _NO_START)
            self._endings = tuple(p._on_ending for p in every if type(p)._on_ending is not _NO_ENDING)
            self._ends = tuple(p.on_end for p in every if type(p).on_end is not _NO_END)

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        for on_start in self._starts:
            on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        for on_ending in self._endings:
            on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        for on_end in self._ends:
            on_end(span)


_NO_START: Final = SpanProcessor.on_start
_NO_ENDING: Final = SpanProcessor._on_ending
_NO_END: Final = SpanProcessor.on_end


class ReservableIds(IdGenerator):
    """The provider's id generator, able to hand out a root span's trace id before the span starts.

    The server middleware of :mod:`._leanhttp` takes the trace id of a request's root
    span with :meth:`reserve_trace_id` to ask the sampler whether the request will be
    sampled; the next root span started on this thread gets that id. Every id still
    comes from the wrapped generator, and each is used once.
    """

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner
        self.generate_span_id = inner.generate_span_id  # type: ignore[method-assign]
        self.is_trace_id_random = inner.is_trace_id_random  # type: ignore[method-assign]
        self._reserved = threading.local()

    def generate_span_id(self) -> int:
        return self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        reserved: int | None = getattr(self._reserved, "trace_id", None)
        if reserved is not None:
            self._reserved.trace_id = None
            return reserved
        return self.inner.generate_trace_id()

    def reserve_trace_id(self) -> int:
        """The trace id the next root span started on this thread will get."""
        reserved: int | None = getattr(self._reserved, "trace_id", None)
        if reserved is None:
            reserved = self._reserved.trace_id = self.inner.generate_trace_id()
        return reserved


class FastTracerProvider(TracerProvider):
    """The SDK's ``TracerProvider`` whose tracers take the shorter path (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _AVAILABLE and len(args) < 4 and kwargs.get("active_span_processor") is None:
            kwargs["active_span_processor"] = _Processors()
        super().__init__(*args, **kwargs)
        if _AVAILABLE and isinstance(self.id_generator, IdGenerator):
            self.id_generator = ReservableIds(self.id_generator)  # type: ignore[assignment]

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace_api.Tracer:
        tracer = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if _AVAILABLE and type(tracer) is Tracer:
            tracer.__class__ = _FastTracer
            tracer._fast_children = _fast_children(tracer.sampler)  # type: ignore[attr-defined]
        return tracer


# The classes whose private fields hold what their properties return: the SDK's spans, events
# and links, and ours. A subclass may override a property (a wrapper that filters attributes,
# say): its values are read through its properties, as the SDK's own exporters read them.
# None without the internals the shorter path relies on.
_PLAIN_TYPES: Final = frozenset((ReadableSpan, Span, _Span, _FastSpan, Event, Link) if _AVAILABLE else ())


def own_fields(span: object) -> dict[str, Any] | None:
    """A finished span's fields (``_name``, ``_context``, ``_attributes``...) to read directly, or None.

    Only for the SDK's ``ReadableSpan`` as its constructor made it (what processors and
    exporters get from the SDK and from this provider); None for anything else, whose
    properties are to be read.
    """
    if type(span) is ReadableSpan and _AVAILABLE:
        fields: dict[str, Any] = span.__dict__
        if fields.keys() >= READABLE_FIELDS:
            return fields
    return None


def attributes_of(span: object) -> Mapping[str, Any]:
    """The attributes of a span, event or link to read: the SDK's own dict when there is one, not a proxy."""
    if type(span) in _PLAIN_TYPES:
        stored = getattr(span, "_attributes", None)
        if type(stored) is BoundedAttributes:
            return stored._dict
    return getattr(span, "attributes", None) or {}


def _sequence_of(span: Any, stored_name: str, public_name: str) -> Sequence[Any]:
    if type(span) in _PLAIN_TYPES:
        stored = getattr(span, stored_name, None)
        if type(stored) is tuple:  # none yet (a span of ours) or made by hand
            return stored
        if type(stored) is BoundedList:
            queue = cast(Any, stored)._dq
            return tuple(queue) if queue else ()
    return getattr(span, public_name, None) or ()


def has_events(span: object) -> bool:
    """Whether a span has events, without copying them."""
    if type(span) in _PLAIN_TYPES:
        stored = getattr(span, "_events", None)
        if type(stored) is tuple:
            return bool(stored)
        if type(stored) is BoundedList:
            return bool(cast(Any, stored)._dq)
    return bool(getattr(span, "events", None))


def events_of(span: ReadableSpan | trace_api.Span) -> Sequence[Event]:
    """A span's events (a snapshot), without the SDK's locked copy when there are none."""
    return _sequence_of(span, "_events", "events")


def links_of(span: ReadableSpan | trace_api.Span) -> Sequence[Link]:
    """A span's links (a snapshot), as :func:`events_of`."""
    return _sequence_of(span, "_links", "links")


def put_session(span: trace_api.Span, attributes: Mapping[str, Any]) -> None:
    """Set attributes read from this or a related span of the same provider (so already clean)."""
    stored = getattr(span, "_attributes", None)
    lock = getattr(span, "_lock", None)
    plain = type(span) in _PLAIN_TYPES
    if plain and type(stored) is BoundedAttributes and lock is not None and stored.maxlen != 0:
        with lock:
            if getattr(span, "_end_time", 1) is None:
                put_clean(stored, attributes)
                return
    span.set_attributes(attributes)
