"""Capture finished spans and metrics on a fresh provider, and render span trees, for tests.

Use the ``span_capture`` pytest fixture (register it with
``from ghl_real_estate_ai.observability.testing import span_capture`` in a
``conftest.py``) or the :func:`capture_spans` context manager::

    async def test_analyze_intent(span_capture: SpanCapture) -> None:
        await analyze_intent({"contact_id": "c1"})
        assert span_capture.tree(["workflow.contact_id"]) == (
            "lead_bot.analyze_intent [workflow.contact_id=c1]"
        )

While it is active, every tracer of the process (ours and the
auto-instrumentations') sends spans to a new SDK ``TracerProvider`` with a
synchronous in-memory exporter, and metrics go to a new ``MeterProvider`` with
an in-memory reader; the previous providers come back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability._fastspan import FastTracerProvider
from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.metrics import HistogramTotals, metric_points
from ghl_real_estate_ai.observability.url_templates import UrlTemplateSpanProcessor

__all__ = ["SpanCapture", "capture_spans", "render_tree", "span_capture"]


class SpanCapture:
    """Finished spans and collected metrics of one capture."""

    def __init__(
        self, exporter: InMemorySpanExporter, reader: InMemoryMetricReader, provider: TracerProvider
    ) -> None:
        self._exporter = exporter
        self._reader = reader
        self.provider = provider
        """The SDK tracer provider spans go to (add processors to it to test exporters)."""

    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self._exporter.get_finished_spans())

    def by_name(self, name: str) -> list[ReadableSpan]:
        """Finished spans called ``name``."""
        return [span for span in self._exporter.get_finished_spans() if span.name == name]

    def tree(self, attributes: Sequence[str] = ()) -> str:
        """The finished spans as an indented tree; see :func:`render_tree`."""
        return render_tree(self.spans(), attributes)

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], float | HistogramTotals]]]:
        """Totals so far: ``{metric name: [(attributes, value or HistogramTotals), ...]}``."""
        return metric_points(self._reader.get_metrics_data())

    def clear(self) -> None:
        """Forget the spans finished so far (metrics are cumulative and stay)."""
        self._exporter.clear()


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    return str(value)


def render_tree(spans: Sequence[ReadableSpan], attributes: Sequence[str] = ()) -> str:
    """Render spans as a tree like the tracing guide's examples.

    Roots (spans whose parent was not captured) come first, children under their
    parent with ``├─``/``└─``; siblings in start-time order. Names only, unless
    ``attributes`` selects keys to show as ``[key=value, ...]`` (absent keys are
    skipped; booleans print as ``true``/``false``).

    Args:
        spans: finished spans.
        attributes: attribute keys to show after each name.

    Returns:
        One line per span, joined by newlines.
    """
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent_id = span.parent.span_id if span.parent is not None else None
        key = parent_id if parent_id in by_id else None
        children.setdefault(key, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda span: span.start_time or 0)

    def label(span: ReadableSpan) -> str:
        values: Mapping[str, Any] = span.attributes or {}
        shown = [f"{key}={_format_value(values[key])}" for key in attributes if key in values]
        return f"{span.name} [{', '.join(shown)}]" if shown else span.name

    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, is_last: bool, is_root: bool) -> None:
        if is_root:
            lines.append(label(span))
            child_prefix = ""
        else:
            lines.append(f"{prefix}{'└─ ' if is_last else '├─ '}{label(span)}")
            child_prefix = prefix + ("   " if is_last else "│  ")
        kids = children.get(span.context.span_id if span.context is not None else None, [])
        for index, kid in enumerate(kids):
            walk(kid, child_prefix, index == len(kids) - 1, False)

    for root in children.get(None, []):
        walk(root, "", True, True)
    return "\n".join(lines)


@contextmanager
def capture_spans(
    sampler: Sampler | None = None,
    resource: Resource | None = None,
    exporter: SpanExporter | None = None,
) -> Iterator[SpanCapture]:
    """Send all spans and metrics to fresh in-memory providers for the block.

    Args:
        sampler: the tracer provider's sampler (default: the SDK's, parent-based always-on).
        resource: the provider's resource (default: ``service.name=enterprisehub-test``).
        exporter: a second exporter fed every finished span synchronously, next to the
            raw capture, e.g. ``RedactingSpanExporter(InMemorySpanExporter())`` to test
            what a real exporter would receive.

    Yields:
        The :class:`SpanCapture`.
    """
    memory = InMemorySpanExporter()
    provider = FastTracerProvider(
        sampler=sampler, resource=resource or Resource.create({"service.name": "enterprisehub-test"})
    )
    # Session keys and the journey, as the real set-up adds them (issue 12).
    provider.add_span_processor(ConversationSpanProcessor())
    provider.add_span_processor(UrlTemplateSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    _provider.install()
    previous_tracer = _provider.current_delegate()
    previous_meter = _provider.current_meter_delegate()
    _provider.set_delegate(provider)
    _provider.set_meter_delegate(meter_provider)
    try:
        yield SpanCapture(memory, reader, provider)
    finally:
        _provider.set_delegate(previous_tracer)
        _provider.set_meter_delegate(previous_meter)
        provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture
def span_capture() -> Iterator[SpanCapture]:
    """Capture every span and metric of the test on fresh providers (see :func:`capture_spans`)."""
    with capture_spans() as capture:
        yield capture
