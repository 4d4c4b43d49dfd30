"""Machinery behind :mod:`ghl_real_estate_ai.observability.workflow_tracing`.

Internal. The public module re-exports what users call; this one holds the
hot path (the node decorator, kept cheap: static attributes are built once at
decoration time, spans are started with ``start_span`` + ``context.attach``
instead of nested context-manager generators) and the dynamic span name guard.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import re
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from enum import Enum
from time import perf_counter
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from ghl_real_estate_ai.observability import _provider, metrics
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability._fastspan import attach_span, current_sampling, detach

_LOGGER = logging.getLogger("ghl_real_estate_ai.observability.workflow_tracing")
_TRACER_NAME: Final = "ghl_real_estate_ai.observability.workflow_tracing"

F = TypeVar("F", bound=Callable[..., Any])

# The guide's modules get tracers with trace.get_tracer(); this one resolves
# the SDK tracer behind the switch itself, once per provider generation, so a
# node call pays one tuple comparison instead of two proxy hops (DESIGN 8: the
# decorator may cost at most 1.3x a bare SDK span, and next to nothing when off).
# (generation, global provider is final, tracer or None, metrics on)
_resolved: tuple[int, bool, Tracer | None, bool] = (-1, False, None, False)
_NOOP_PROVIDERS = (trace_api.NoOpTracerProvider, trace_api.ProxyTracerProvider)


def tracing_state() -> tuple[Tracer | None, bool]:
    """``(the tracer spans go to or None when tracing is off, whether metrics are on)``."""
    resolved = _resolved
    if resolved[0] == _provider.generation() and resolved[1]:
        return resolved[2], resolved[3]
    return _resolve()


def active_tracer() -> Tracer | None:
    """The tracer spans go to right now, or ``None`` when tracing is off."""
    return tracing_state()[0]


def _resolve() -> tuple[Tracer | None, bool]:
    global _resolved
    generation = _provider.generation()
    global_provider = trace_api.get_tracer_provider()
    tracer: Tracer | None
    if isinstance(global_provider, _provider.SwitchTracerProvider):
        delegate = _provider.current_delegate()
        tracer = None if isinstance(delegate, _NOOP_PROVIDERS) else delegate.get_tracer(_TRACER_NAME)
    elif isinstance(global_provider, _NOOP_PROVIDERS):
        tracer = None
    else:
        # Somebody installed their own SDK provider globally: honour it.
        tracer = global_provider.get_tracer(_TRACER_NAME)
    # OpenTelemetry sets the global provider once; until then (a proxy) it is checked each call.
    final = not isinstance(global_provider, trace_api.ProxyTracerProvider)
    metrics_on = _provider.current_meter_delegate() is not None
    _resolved = (generation, final, tracer, metrics_on)
    return tracer, metrics_on


# A tuple, not ``str | bool | int | float``: the union would be built again on every call.
_PLAIN: Final = (str, bool, int, float)


def attribute_value(value: Any) -> str | bool | int | float:
    """Turn a state value into something OpenTelemetry accepts as an attribute."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Enum):
        return attribute_value(value.value)
    return str(value)


# --- dynamic span name guard -------------------------------------------------
_ID_RULES: Final = (
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "a UUID",
    ),
    (re.compile(r"\d{6,}"), "a run of 6 or more digits"),
    (
        re.compile(r"(?<![0-9a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}(?![0-9a-fA-F])"),
        "a hex id of 8 or more characters",
    ),
    (
        # GHL ids look like "ocQHyuzHvysMo5N5VsXc": long tokens mixing letters and digits.
        re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{12,}(?![A-Za-z0-9])"),
        "an id-like token of 12 or more letters and digits",
    ),
)
_guard_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()
_detections = 0


def dynamic_span_name_warnings() -> int:
    """How many dynamic span names were detected in this process (at decoration or call time)."""
    return _detections


def reset_dynamic_name_guard() -> None:
    """Forget which names were warned about (tests use it to see the warning again)."""
    global _detections
    with _guard_lock:
        _warned.clear()
        _detections = 0


def _id_problem(node_name: str) -> tuple[str, str] | None:
    """``(what looks like an id, the name with ids replaced by {id})`` or ``None``."""
    for pattern, problem in _ID_RULES:
        if pattern.search(node_name):
            normalized = node_name
            for other, _ in _ID_RULES:
                normalized = other.sub("{id}", normalized)
            return problem, normalized
    return None


def _report_dynamic_name(bot_type: str, node_name: str, normalized: str, problem: str) -> None:
    global _detections
    with _guard_lock:
        _detections += 1
        # One warning per (bot, name pattern): a per-contact name would otherwise
        # warn once per contact, which is the very flood the guard is about.
        key = (bot_type, normalized)
        if key in _warned:
            return
        _warned.add(key)
    suggestion = re.sub(r"[_.\-]*\{(?:id|contact_id)\}[_.\-]*", "_", normalized).strip("_.-") or "process"
    _LOGGER.warning(
        "Span name %r looks dynamic: the node name holds %s. High-cardinality span names "
        "make traces impossible to group and query. Use a static name and put the id in an "
        "attribute, e.g. @trace_workflow_node(%r, %r) (workflow.contact_id is taken from the state).",
        f"{bot_type}.{node_name}",
        problem,
        bot_type,
        suggestion,
    )


class NodeSpec:
    """Everything about a decorated node that does not change between calls."""

    __slots__ = (
        "bot_type",
        "error_metric_attributes",
        "flagged",
        "metric_fail",
        "metric_ok",
        "node_name",
        "span_name",
        "static_attributes",
    )

    def __init__(self, bot_type: str, node_name: str) -> None:
        for label, value in (("bot_type", bot_type), ("node_name", node_name)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"trace_workflow_node needs a non-empty string {label}, got {value!r}: "
                    "pass e.g. trace_workflow_node('lead_bot', 'analyze_intent')"
                )
        self.bot_type = bot_type
        self.node_name = node_name
        self.span_name = f"{bot_type}.{node_name}"
        self.static_attributes: dict[str, Any] = {
            attr.WORKFLOW_BOT_TYPE: bot_type,
            attr.WORKFLOW_NODE_NAME: node_name,
        }
        self.metric_ok, self.metric_fail = metrics.node_metric_attributes(bot_type, node_name)
        self.error_metric_attributes = {"bot_type": bot_type}
        found = _id_problem(node_name)
        self.flagged = found is not None
        if found is not None:
            _report_dynamic_name(bot_type, node_name, found[1], found[0])

    def check_contact(self, contact: str) -> None:
        """Warn when the node name holds the state's contact id (found at call time)."""
        if not self.flagged and len(contact) >= 4 and contact in self.node_name:
            _report_dynamic_name(
                self.bot_type,
                self.node_name,
                self.node_name.replace(contact, "{contact_id}"),
                "the contact id of the state",
            )


def find_state(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The node's state: the first Mapping among positional, then keyword arguments."""
    for value in args:
        if type(value) is dict or isinstance(value, Mapping):
            return cast(Mapping[str, Any], value)
    for value in kwargs.values():
        if type(value) is dict or isinstance(value, Mapping):
            return cast(Mapping[str, Any], value)
    return None


def _state_attributes(spec: NodeSpec, state: Mapping[str, Any]) -> dict[str, Any]:
    """The node span's start attributes: the static ones, then the contact, step and temperature."""
    attributes = spec.static_attributes.copy()
    for key in attr.STATE_CONTACT_KEYS:
        contact = state.get(key)
        if contact is not None and contact != "":
            value = attributes[attr.WORKFLOW_CONTACT_ID] = attribute_value(contact)
            if isinstance(value, str):
                spec.check_contact(value)
            break
    step = state.get("current_step")
    if step is not None:
        attributes[attr.WORKFLOW_CURRENT_STEP] = attribute_value(step)
    temperature = state.get("temperature")
    if temperature is not None:
        attributes[attr.WORKFLOW_TEMPERATURE] = attribute_value(temperature)
    return attributes


def unsampled_parent() -> bool:
    """True when the current span exists but was not sampled: its children are not either.

    The parent-based samplers (ours, and OpenTelemetry's default) follow the
    parent's decision, so starting a child only to get a non-recording span back
    would be wasted work: no span, no attributes, no context switch (issue 14).
    """
    return current_sampling() is False


def begin(
    spec: NodeSpec, tracer: Tracer | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Span | None:
    """Start the node span of a call with ``args`` and ``kwargs`` (``None`` when tracing is off
    or the parent is unsampled).

    The caller makes it current. The state is looked for, and attributes built, only for a
    span that records.
    """
    if tracer is None or unsampled_parent():
        return None
    state = find_state(args, kwargs)
    attributes = spec.static_attributes if state is None else _state_attributes(spec, state)
    return tracer.start_span(spec.span_name, attributes=attributes)


def finish_ok(spec: NodeSpec, span: Span | None, started: float, result: Any) -> None:
    """Close a node call that returned: success attributes, end the span, record the metric."""
    duration_ms = (perf_counter() - started) * 1000.0
    if span is not None:
        final: dict[str, Any] = {attr.WORKFLOW_SUCCESS: True, attr.WORKFLOW_DURATION_MS: duration_ms}
        if isinstance(result, Mapping):
            _result_updates(result, final)
        span.set_attributes(final)
        span.end()
    metrics.record_node(duration_ms, spec.metric_ok)


def finish_error(spec: NodeSpec, span: Span | None, started: float, exc: BaseException) -> None:
    """Close a node call that raised: one exception event, ERROR, success=false, metrics."""
    duration_ms = (perf_counter() - started) * 1000.0
    is_error = isinstance(exc, Exception)
    if span is not None:
        span.set_attributes({attr.WORKFLOW_SUCCESS: False, attr.WORKFLOW_DURATION_MS: duration_ms})
        if is_error:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
    metrics.record_node(
        duration_ms, spec.metric_fail, error_attributes=spec.error_metric_attributes if is_error else None
    )


def _result_updates(result: Mapping[str, Any], into: dict[str, Any]) -> None:
    step = result.get("current_step")
    if step is not None:
        into[attr.WORKFLOW_CURRENT_STEP] = attribute_value(step)
    temperature = result.get("temperature")
    if temperature is not None:
        into[attr.WORKFLOW_TEMPERATURE] = attribute_value(temperature)


def trace_node(bot_type: str, node_name: str) -> Callable[[F], F]:
    """See :func:`ghl_real_estate_ai.observability.workflow_tracing.trace_workflow_node`."""
    spec = NodeSpec(bot_type, node_name)

    def decorate(fn: F) -> F:
        if inspect.isasyncgenfunction(fn):
            return cast(F, _wrap_async_generator(spec, fn))
        if inspect.iscoroutinefunction(fn):
            return cast(F, _wrap_coroutine(spec, fn))
        if inspect.isgeneratorfunction(fn):
            return cast(F, _wrap_generator(spec, fn))
        if not callable(fn):
            raise TypeError(f"trace_workflow_node decorates functions, got {fn!r}")
        return cast(F, _wrap_function(spec, fn))

    return decorate


def _wrap_coroutine(spec: NodeSpec, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def node(*args: Any, **kwargs: Any) -> Any:
        tracer, metrics_on = tracing_state()
        if tracer is None and not metrics_on:
            return await fn(*args, **kwargs)
        span = begin(spec, tracer, args, kwargs)
        token = attach_span(span) if span is not None else None
        started = perf_counter()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            if token is not None:
                detach(token)
            finish_error(spec, span, started, exc)
            raise
        if token is not None:
            detach(token)
        finish_ok(spec, span, started, result)
        return result

    return node


def _wrap_function(spec: NodeSpec, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def node(*args: Any, **kwargs: Any) -> Any:
        tracer, metrics_on = tracing_state()
        if tracer is None and not metrics_on:
            return fn(*args, **kwargs)
        span = begin(spec, tracer, args, kwargs)
        token = attach_span(span) if span is not None else None
        started = perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if token is not None:
                detach(token)
            finish_error(spec, span, started, exc)
            raise
        if token is not None:
            detach(token)
        finish_ok(spec, span, started, result)
        return result

    return node


def _wrap_async_generator(spec: NodeSpec, fn: Callable[..., Any]) -> Callable[..., Any]:
    # The span must be current only while the generator body runs, not while the
    # consumer holds an item, so the context is attached around every resume.
    @functools.wraps(fn)
    async def node(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        span = begin(spec, active_tracer(), args, kwargs)
        ctx = trace_api.set_span_in_context(span) if span is not None else None
        inner: AsyncGenerator[Any, Any] = fn(*args, **kwargs)
        started = perf_counter()
        last: Any = None
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                token = context_api.attach(ctx) if ctx is not None else None
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = await inner.athrow(thrown)
                    else:
                        item = await inner.asend(to_send)
                except StopAsyncIteration:
                    break
                finally:
                    if token is not None:
                        detach(token)
                if isinstance(item, Mapping):
                    last = item
                try:
                    to_send = yield item
                except GeneratorExit:
                    token = context_api.attach(ctx) if ctx is not None else None
                    try:
                        await inner.aclose()
                    finally:
                        if token is not None:
                            detach(token)
                    raise
                except BaseException as exc:
                    to_throw = exc
        except GeneratorExit:
            # The consumer stopped early (break, aclose): a normal end for a stream.
            finish_ok(spec, span, started, last)
            raise
        except BaseException as exc:
            finish_error(spec, span, started, exc)
            raise
        finish_ok(spec, span, started, last)

    return node


def _wrap_generator(spec: NodeSpec, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def node(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        span = begin(spec, active_tracer(), args, kwargs)
        ctx = trace_api.set_span_in_context(span) if span is not None else None
        inner: Generator[Any, Any, Any] = fn(*args, **kwargs)
        started = perf_counter()
        last: Any = None
        to_send: Any = None
        to_throw: BaseException | None = None
        returned: Any = None
        try:
            while True:
                token = context_api.attach(ctx) if ctx is not None else None
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = inner.throw(thrown)
                    else:
                        item = inner.send(to_send)
                except StopIteration as stop:
                    returned = stop.value
                    break
                finally:
                    if token is not None:
                        detach(token)
                if isinstance(item, Mapping):
                    last = item
                try:
                    to_send = yield item
                except GeneratorExit:
                    token = context_api.attach(ctx) if ctx is not None else None
                    try:
                        inner.close()
                    finally:
                        if token is not None:
                            detach(token)
                    raise
                except BaseException as exc:
                    to_throw = exc
        except GeneratorExit:
            finish_ok(spec, span, started, last)
            raise
        except BaseException as exc:
            finish_error(spec, span, started, exc)
            raise
        finish_ok(spec, span, started, returned if isinstance(returned, Mapping) else last)
        return returned

    return node


# --- custom spans --------------------------------------------------------------
class WorkflowSpan:
    """A custom span ``<bot>.<name>``, usable with ``with`` and ``async with``."""

    __slots__ = ("_attributes", "_name", "_span", "_started", "_token")

    def __init__(self, bot_type: str, name: str, contact_id: str | None, attributes: dict[str, Any]) -> None:
        self._name = f"{bot_type}.{name}"
        merged: dict[str, Any] = {attr.WORKFLOW_BOT_TYPE: bot_type, attr.WORKFLOW_NODE_NAME: name}
        if contact_id is not None:
            merged[attr.WORKFLOW_CONTACT_ID] = attribute_value(contact_id)
        for key, value in attributes.items():
            if value is not None:
                merged[key] = value
        self._attributes = merged
        self._span: Span = trace_api.INVALID_SPAN
        self._token: object | None = None
        self._started = 0.0

    def __enter__(self) -> Span:
        tracer = active_tracer()
        if tracer is not None and not unsampled_parent():
            self._span = tracer.start_span(self._name, attributes=self._attributes)
            self._token = attach_span(self._span)
        self._started = perf_counter()
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is None:
            return
        detach(self._token)  # type: ignore[arg-type]  # set in __enter__
        self._token = None
        span = self._span
        duration_ms = (perf_counter() - self._started) * 1000.0
        span.set_attributes({attr.WORKFLOW_SUCCESS: exc is None, attr.WORKFLOW_DURATION_MS: duration_ms})
        if isinstance(exc, Exception):
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


# --- handoffs ------------------------------------------------------------------
_OUTCOME_PATTERN: Final = re.compile(r"executed|(?:blocked|failed):\S.*", re.DOTALL)
_current_handoff: contextvars.ContextVar[HandoffSpan | None] = contextvars.ContextVar(
    "jorge_current_handoff", default=None
)


def _short_bot(name: str) -> str:
    # "lead_bot" and "lead" name the same route: handoff.lead_to_buyer either way.
    return name[: -len("_bot")] if name.endswith("_bot") and len(name) > len("_bot") else name


class HandoffSpan:
    """The span of one cross-bot handoff; ends on every way out of its ``with`` block."""

    __slots__ = ("_attributes", "_ctx_token", "_name", "_outcome", "_route", "_span", "_started", "_token")

    def __init__(
        self, source_bot: str, target_bot: str, contact_id: str, confidence: float, reason: str
    ) -> None:
        self._route = f"{_short_bot(source_bot)}_to_{_short_bot(target_bot)}"
        self._name = f"handoff.{self._route}"
        attributes: dict[str, Any] = {
            attr.HANDOFF_SOURCE_BOT: source_bot,
            attr.HANDOFF_TARGET_BOT: target_bot,
            attr.HANDOFF_CONTACT_ID: attribute_value(contact_id),
            attr.HANDOFF_REASON: attribute_value(reason),
        }
        try:
            attributes[attr.HANDOFF_CONFIDENCE] = float(confidence)
        except (TypeError, ValueError):
            # Tracing never breaks the handoff: a bad score is logged, not raised.
            _LOGGER.warning(
                "create_handoff_span: confidence %r is not a number; handoff.confidence left out", confidence
            )
        self._attributes = attributes
        self._outcome: str | None = None
        self._span: Span = trace_api.INVALID_SPAN
        self._token: object | None = None
        self._ctx_token: contextvars.Token[HandoffSpan | None] | None = None
        self._started = 0.0

    @property
    def route(self) -> str:
        """``<source>_to_<target>``, e.g. ``lead_to_buyer``."""
        return self._route

    def set_outcome(self, outcome: str) -> None:
        """Set ``handoff.outcome`` (``executed``, ``blocked:<reason>``, ``failed:<what>``)."""
        if not isinstance(outcome, str) or _OUTCOME_PATTERN.fullmatch(outcome) is None:
            raise ValueError(
                f"handoff outcome must be 'executed', 'blocked:<reason>' or 'failed:<what>', got {outcome!r}"
            )
        self._outcome = outcome

    def __enter__(self) -> Span:
        tracer = active_tracer()
        if tracer is not None and not unsampled_parent():
            self._span = tracer.start_span(self._name, attributes=self._attributes)
            self._token = attach_span(self._span)
        self._ctx_token = _current_handoff.set(self)
        self._started = perf_counter()
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration_ms = (perf_counter() - self._started) * 1000.0
        if self._ctx_token is not None:
            # ValueError: exited in another context (a generator closed elsewhere), nothing to restore.
            with contextlib.suppress(ValueError):
                _current_handoff.reset(self._ctx_token)
            self._ctx_token = None
        if exc is not None:
            outcome = f"failed:{type(exc).__name__}"
        else:
            outcome = self._outcome or attr.OUTCOME_EXECUTED
        if self._token is not None:
            detach(self._token)  # type: ignore[arg-type]  # set in __enter__
            self._token = None
            span = self._span
            span.set_attribute(attr.HANDOFF_OUTCOME, outcome)
            if isinstance(exc, Exception):
                span.record_exception(exc)
            if exc is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        metrics.record_handoff(self._route, outcome, duration_ms)


def set_handoff_outcome(outcome: str) -> bool:
    """See :func:`ghl_real_estate_ai.observability.workflow_tracing.set_handoff_outcome`."""
    handoff = _current_handoff.get()
    if handoff is None:
        _LOGGER.debug("set_handoff_outcome(%r) outside a handoff span: ignored", outcome)
        if not isinstance(outcome, str) or _OUTCOME_PATTERN.fullmatch(outcome) is None:
            raise ValueError(
                f"handoff outcome must be 'executed', 'blocked:<reason>' or 'failed:<what>', got {outcome!r}"
            )
        return False
    handoff.set_outcome(outcome)
    return True
