"""A bounded batch span processor that counts what it loses and never blocks the app.

The SDK's ``BatchSpanProcessor`` drops spans when its queue is full but only
logs it, and its ``force_flush`` ignores the timeout it is given. Tracing must
never slow or break a request (DESIGN 7), and operators need to see how much
telemetry an exporter outage cost, so this processor:

* keeps at most ``max_queue_size`` finished spans; a span arriving at a full
  queue is dropped and counted (``on_end`` never waits);
* exports from one daemon thread in batches of ``max_export_batch_size``, at
  least every ``schedule_delay`` seconds;
* honours the timeout of ``force_flush`` and ``shutdown`` even while an export
  hangs on a black-holed endpoint;
* counts spans handed to a failed export and spans still queued when shutdown
  ran out of time.

Internal: :mod:`ghl_real_estate_ai.observability.otel_config` builds one per
exporter and reads :attr:`BoundedBatchSpanProcessor.stats`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import TraceFlags

from ghl_real_estate_ai.observability._suppress import suppressed

__all__ = ["BoundedBatchSpanProcessor", "ExportStats"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportStats:
    """What happened to the spans one processor (or all of them) received.

    Attributes:
        exported: spans the exporter accepted.
        queue_full: spans dropped on arrival because the queue was full.
        failed: spans in batches the exporter reported as failed.
        abandoned: spans still queued when shutdown ran out of time.
    """

    exported: int = 0
    queue_full: int = 0
    failed: int = 0
    abandoned: int = 0

    @property
    def dropped(self) -> int:
        """Spans that never reached the backend, whatever the reason."""
        return self.queue_full + self.failed + self.abandoned

    def __add__(self, other: ExportStats) -> ExportStats:
        return ExportStats(
            self.exported + other.exported,
            self.queue_full + other.queue_full,
            self.failed + other.failed,
            self.abandoned + other.abandoned,
        )


class BoundedBatchSpanProcessor(SpanProcessor):
    """Batch finished, sampled spans to ``exporter`` through a bounded queue.

    Args:
        exporter: where batches go.
        max_queue_size: spans kept while the exporter is slow or down.
        schedule_delay: seconds between exports when the queue is not full.
        max_export_batch_size: spans per ``export`` call.
        name: label used in log lines and the worker thread's name.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        schedule_delay: float = 1.0,
        max_export_batch_size: int = 512,
        name: str = "exporter",
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size!r}")
        if not 1 <= max_export_batch_size <= max_queue_size:
            raise ValueError(
                f"max_export_batch_size must be between 1 and max_queue_size ({max_queue_size}), "
                f"got {max_export_batch_size!r}"
            )
        self.exporter = exporter
        self.name = name
        self._max_queue_size = max_queue_size
        self._schedule_delay = schedule_delay
        self._batch_size = max_export_batch_size
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_waiters: list[threading.Event] = []
        self._shutdown = False
        self._closing = False
        self._healthy = True  # did the last export succeed?
        self._exported = 0
        self._queue_full = 0
        self._failed = 0
        self._abandoned = 0
        self._worker = threading.Thread(target=self._run, name=f"jorge-span-export-{name}", daemon=True)
        self._worker.start()

    @property
    def stats(self) -> ExportStats:
        """Counts so far (a consistent snapshot).

        An exporter that hands spans on to another process (the trace writer) says
        in ``lost`` how many of those it accepted were not stored after all; they
        count as failed, not exported.
        """
        lost = getattr(self.exporter, "lost", 0)
        with self._lock:
            return ExportStats(self._exported - lost, self._queue_full, self._failed + lost, self._abandoned)

    @property
    def finished(self) -> bool:
        """True once shut down with the worker gone: the counts will not change any more."""
        return self._shutdown and not self._worker.is_alive()

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a finished span, or count it as dropped when the queue is full."""
        if not span.context[3] & TraceFlags.SAMPLED:  # a SpanContext is a tuple: its trace flags
            return
        with self._lock:
            if self._shutdown:
                self._abandoned += 1
                return
            if len(self._queue) >= self._max_queue_size:
                self._queue_full += 1
                return
            self._queue.append(span)
            wake = len(self._queue) >= self._batch_size
        if wake:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued now; give up after ``timeout_millis``.

        Returns:
            True when the queue was drained in time.
        """
        done = threading.Event()
        with self._lock:
            if self._shutdown:
                return False
            self._flush_waiters.append(done)
        self._wake.set()
        deadline = time.monotonic() + timeout_millis / 1000
        if not done.wait(timeout_millis / 1000):
            return False
        # The exporter may hold spans of its own (the trace writer does): flush it too.
        left = max(0, int((deadline - time.monotonic()) * 1000))
        try:
            return bool(self.exporter.force_flush(left))
        except Exception:
            _logger.exception("span exporter %s failed to flush", self.name)
            return False

    def shutdown(self, timeout_millis: int = 5_000) -> None:
        """Flush what the time allows, then stop the worker and the exporter."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            if self._shutdown:
                return
            # While closing, the first failed export ends the final drain: against a dead
            # collector each further batch would only burn the remaining budget.
            self._closing = True
            healthy = self._healthy
        if healthy:  # a collector known to be down gets no final flush to wait for
            self.force_flush(max(0, int((deadline - time.monotonic()) * 1000)))
        with self._lock:
            self._shutdown = True
            self._abandoned += len(self._queue)
            self._queue.clear()
        self._wake.set()
        if hasattr(self.exporter, "stop_timeout"):
            # A writer process gets what is left of the bound to drain and exit (then it is killed).
            self.exporter.stop_timeout = max(0.2, deadline - time.monotonic())
        try:
            # Interrupts the OTLP exporters' retry back-off and closes their channel,
            # which ends an export stuck on a dead endpoint.
            self.exporter.shutdown()
        except Exception:  # an exporter failing to close must not break shutdown
            _logger.exception("span exporter %s failed to shut down", self.name)
        self._worker.join(max(0.0, deadline - time.monotonic()))

    def _take_batch(self) -> list[ReadableSpan]:
        with self._lock:
            count = min(self._batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            self._wake.wait(self._schedule_delay)
            self._wake.clear()
            with self._lock:
                stopping = self._shutdown
                waiters, self._flush_waiters = self._flush_waiters, []
                # A flush drains what is queued now, not spans that keep arriving meanwhile.
                budget = len(self._queue) if waiters else self._batch_size
            while not stopping and budget > 0 and (batch := self._take_batch()):
                budget -= len(batch)
                if not self._export(batch) and self._closing:
                    break
                if not waiters and len(self._queue) >= self._batch_size:
                    budget = self._batch_size  # keep up while full batches are waiting
            for waiter in waiters:
                waiter.set()
            if stopping:
                return

    def _export(self, batch: list[ReadableSpan]) -> bool:
        try:
            # Suppressed so an exporter's own HTTP calls never become spans that refill the queue.
            with suppressed():
                result = self.exporter.export(batch)
        except Exception:  # a buggy exporter must not kill the worker
            _logger.exception("span exporter %s raised while exporting %d spans", self.name, len(batch))
            result = SpanExportResult.FAILURE
        with self._lock:
            self._healthy = result is SpanExportResult.SUCCESS
            if self._healthy:
                self._exported += len(batch)
            else:
                self._failed += len(batch)
            return self._healthy
