"""The trace writer process: a span exporter that runs beside the app instead of inside it.

One job: take the costly half of exporting (redaction, the local store's SQLite
inserts) out of the app's process, so it stops competing with the event loop for
the GIL. The app keeps its bounded batch queue; its export thread only turns each
batch into plain tuples and writes them, ``marshal``-encoded and length-prefixed,
to the writer's stdin (a private pipe: nothing listens on a port). The writer,
``python -m ghl_real_estate_ai.observability._writer``, rebuilds the spans, redacts
them and hands them to the real exporter, then answers with its running counts.

* Started with tracing (``setup_observability``) and stopped with it: shutdown
  closes the pipe, the writer drains what it holds and exits; one that does not
  within the time left is killed.
* It writes the local store (TRACE_STORE_PROCESS, the default) or, opt-in,
  sends OTLP to a collector (OTLP_EXPORT_PROCESS): then the protobuf encoding
  and the network calls leave the app's process too.
* ``force_flush`` waits until the writer has stored everything sent before it.
* Back-pressure, not loss: a writer that falls behind fills the pipe, the app's
  export thread waits on it, and the app's bounded queue drops (and counts) what
  arrives past its size. Spans the writer could not store, and spans it never
  read because it died, are counted as failed (``export_stats()``).
* A writer that dies is started again at the next batch.

Internal: :mod:`._lifecycle` builds one per exporter that runs in a writer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ghl_real_estate_ai.observability._fastspan import attributes_of, events_of, links_of, own_fields

__all__ = ["WriterProcessExporter", "encode_batch"]

logger = logging.getLogger("ghl_real_estate_ai.observability.otel_config")

_HEADER = struct.Struct("<I")
_SPANS = 0
_FLUSH = 1
_KINDS = tuple(SpanKind)
_CODES = tuple(StatusCode)
# An enum's .value is a Python-level descriptor call: looked up once per member instead.
_KIND_VALUES = {kind: kind.value for kind in SpanKind}
_CODE_VALUES = {code: code.value for code in StatusCode}
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


# --- the app's side ----------------------------------------------------------------


def _plain(owner: Any) -> dict[str, Any]:
    """The attributes of a span, event or link as a dict marshal takes (the SDK's own dict, not a copy)."""
    attributes = attributes_of(owner)
    return attributes if type(attributes) is dict else dict(attributes)


def _row(span: ReadableSpan, resource_key: int) -> tuple[Any, ...]:
    fields = own_fields(span)
    if fields is not None:
        # The SDK's own finished span: its fields read directly, not through a property each.
        context, parent = fields["_context"], fields["_parent"]
        scope, status = fields["_instrumentation_scope"], fields["_status"]
        name, kind, start, end = fields["_name"], fields["_kind"], fields["_start_time"], fields["_end_time"]
    else:
        context, parent, scope, status = span.context, span.parent, span.instrumentation_scope, span.status
        name, kind, start, end = span.name, span.kind, span.start_time, span.end_time
    events = events_of(span)
    links = links_of(span)
    # A SpanContext is a tuple: (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid).
    return (
        context[0] if context else 0,
        context[1] if context else 0,
        int(context[3]) if context else 0,
        parent[1] if parent else None,
        parent[2] if parent else False,
        name,
        _KIND_VALUES[kind],
        start,
        end,
        _CODE_VALUES[status.status_code],
        status.description,
        _plain(span),
        [(e.name, e.timestamp, _plain(e)) for e in events] if events else None,
        [
            (
                link.context.trace_id,
                link.context.span_id,
                int(link.context.trace_flags),
                _plain(link),
            )
            for link in links
        ]
        if links
        else None,
        scope.name if scope else None,
        scope.version if scope else None,
        resource_key,
    )


def _safe(value: Any) -> Any:
    """A value marshal can carry (attribute values are str, bool, int, float or tuples of them)."""
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, tuple | list):
        return tuple(_safe(item) for item in value)
    return str(value)


def encode_batch(spans: Sequence[ReadableSpan], resource_keys: dict[int, tuple[Resource, int]]) -> bytes:
    """One batch as the writer reads it: plain tuples, ``marshal``-encoded (the app's only work per span).

    ``resource_keys`` remembers the resources the writer was already sent (by
    identity: a provider's spans share one Resource object); new ones go along.
    """
    new_resources: list[tuple[int, dict[str, Any], str | None]] = []
    rows = []
    for span in spans:
        resource = span.resource
        known = resource_keys.get(id(resource))
        if known is None or known[0] is not resource:
            known = (resource, len(resource_keys) + 1)
            resource_keys[id(resource)] = known
            new_resources.append((known[1], dict(resource.attributes), resource.schema_url or None))
        rows.append(_row(span, known[1]))
    try:
        return marshal.dumps((_SPANS, new_resources, rows))
    except ValueError:  # an attribute value marshal cannot carry: make it plain
        rows = [(*r[:11], {k: _safe(v) for k, v in r[11].items()}, *r[12:]) for r in rows]
        return marshal.dumps((_SPANS, new_resources, rows))


class WriterProcessExporter(SpanExporter):
    """A span exporter that hands spans to a writer process (see the module docstring).

    Args:
        spec: what the writer builds: ``{"kind": "local", "path": ..., "max_spans": ...,
            "max_age_hours": ..., "capture_content": ...}`` or ``{"kind": "otlp"`` (or
            ``"otlp_http"``) ``, "endpoint": ..., "headers": {...}, "timeout": seconds,
            "capture_content": ...}``.
        label: names the writer in log lines.
        stop_timeout: seconds shutdown waits for the writer to drain and exit.
    """

    def __init__(self, spec: dict[str, Any], *, label: str = "local", stop_timeout: float = 5.0) -> None:
        self.spec = spec
        self.label = label
        self.stop_timeout = stop_timeout
        self._write_lock = threading.Lock()
        self._acks = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._current: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._resource_keys: dict[int, tuple[Resource, int]] = {}
        self._closed = False
        self._sent_seq = 0
        self._acked_seq = 0
        self._starts = 0
        self._started_at = 0.0
        self._answered = False  # has the current writer answered at least once?
        self.restart_pause = 30.0
        """Seconds before a writer that never answered is started again."""
        # Counts: spans written to the pipe, and what the writers said they did with them.
        self.written = 0
        self._gone_written = 0  # written to writers that have exited
        self._gone_stored = 0
        self._gone_failed = 0
        self._written_here = 0  # written to the current writer
        self._stored = 0  # by the current writer
        self._failed = 0
        self._start()

    # --- the writer's life -----------------------------------------------------
    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "ghl_real_estate_ai.observability._writer", json.dumps(self.spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self._starts += 1
        self._started_at = time.monotonic()
        self._answered = False
        self._current = process  # the writer this side writes to (changed under the write lock)
        self._process = process  # the same, until its reader sees it exit
        self._resource_keys.clear()
        self._stored = self._failed = 0
        self._written_here = 0
        reader = threading.Thread(
            target=self._read_answers, args=(process,), name=f"jorge-trace-writer-{self.label}", daemon=True
        )
        self._reader = reader
        reader.start()

    def _read_answers(self, process: subprocess.Popen[bytes]) -> None:
        stdout = process.stdout
        assert stdout is not None
        while True:
            message = _read_frame(stdout)
            if message is None:
                break
            seq, stored, failed = message
            with self._acks:
                if process is self._process:
                    self._answered = True
                    self._stored, self._failed = stored, failed
                    self._acked_seq = max(self._acked_seq, seq)
                self._acks.notify_all()
        stdout.close()
        process.wait()
        with self._acks:
            if process is self._process:
                self._gone_written += self._written_here
                self._gone_stored += self._stored
                self._gone_failed += self._failed
                self._written_here = 0
                self._stored = self._failed = 0
                self._process = None
            self._acks.notify_all()

    @property
    def lost(self) -> int:
        """Spans written to a writer that it failed to store, or never read before it exited."""
        with self._acks:
            gone_lost = self._gone_written - self._gone_stored
            return gone_lost + self._failed

    @property
    def pid(self) -> int | None:
        """The writer's process id while it runs."""
        process = self._process
        return process.pid if process is not None else None

    # --- SpanExporter ------------------------------------------------------------
    def _ensure_running(self) -> bool:
        """Whether a writer runs, starting a new one when the last exited.

        A writer that exited without ever answering (it cannot start: a broken
        installation, say) is not started again for ``restart_pause`` seconds: the
        batches meanwhile fail and are counted, instead of a process per batch.
        """
        current = self._current
        if current is not None and current.poll() is None:
            return True
        if current is not None and current.stdin is not None:
            with contextlib.suppress(OSError):
                current.stdin.close()
        if self._reader is not None:
            self._reader.join(1.0)  # let it account for the writer that exited
        now = time.monotonic()
        if not self._answered and now - self._started_at < self.restart_pause:
            return False
        if self._answered:
            logger.warning("tracing: the trace writer (%s) had exited; starting it again", self.label)
        else:
            logger.warning(
                "tracing: the trace writer (%s) exited without storing anything (see its errors above); "
                "trying again, then at most every %.0f s; spans are dropped and counted meanwhile",
                self.label,
                self.restart_pause,
            )
        self._start()
        return True

    def _send(self, payload: bytes) -> bool:
        current = self._current
        if current is None or current.stdin is None:
            return False
        try:
            _write_all(current.stdin, _HEADER.pack(len(payload)) + payload)
        except (OSError, ValueError):  # a writer that died (or its pipe closed)
            return False
        return True

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        return encode_batch(spans, self._resource_keys)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` to the writer's pipe (waits while the pipe is full)."""
        with self._write_lock:
            if self._closed:
                return SpanExportResult.FAILURE
            for _ in range(2):
                if not self._ensure_running():
                    return SpanExportResult.FAILURE
                # A new writer knows no resource yet: the batch is encoded for the one that runs.
                if self._send(self._encode(spans)):
                    break
                # The writer died under us: let it be reaped, then once more with a new one.
                if self._current is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._current.wait(1.0)
            else:
                return SpanExportResult.FAILURE
            with self._acks:
                self.written += len(spans)
                self._written_here += len(spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until the writer has stored every span written before this call."""
        deadline = time.monotonic() + timeout_millis / 1000
        if not self._write_lock.acquire(timeout=max(0.0, timeout_millis / 1000)):
            return False
        try:
            if self._closed:
                return False
            if self._process is None:
                return True  # nothing was sent to a writer that is still to store it
            self._sent_seq += 1
            seq = self._sent_seq
            process = self._current
            if not self._send(marshal.dumps((_FLUSH, seq))):
                return False
        finally:
            self._write_lock.release()
        with self._acks:
            while self._acked_seq < seq and self._process is process:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acks.wait(left)
            return self._acked_seq >= seq

    def shutdown(self) -> None:
        """Close the pipe; the writer stores what it holds and exits (killed after ``stop_timeout``)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            process = self._current
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "tracing: the trace writer (%s) did not stop in %.1f s; killed it",
                self.label,
                self.stop_timeout,
            )
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(1.0)


def _write_all(stream: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:  # pragma: no cover - a blocking pipe never answers None
            continue
        view = view[written:]


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: IO[bytes]) -> Any:
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    payload = _read_exact(stream, _HEADER.unpack(header)[0])
    if payload is None:
        return None
    return marshal.loads(payload)


# --- the writer's side ---------------------------------------------------------------


# What every span would otherwise build again: flags, a status without description, and
# the instrumentation scope (which makes its own attribute mapping). All are immutable.
_FLAGS = tuple(TraceFlags(flags) for flags in range(256))
_PLAIN_STATUSES = tuple(Status(code) for code in _CODES)
_MAX_SCOPES = 256
_scopes: dict[tuple[str, str | None], InstrumentationScope] = {}


def _flags(flags: int) -> TraceFlags:
    return _FLAGS[flags] if 0 <= flags < 256 else TraceFlags(flags)


def _context(trace_id: int, span_id: int, flags: int, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, remote, _flags(flags))


def _scope(name: str, version: str | None) -> InstrumentationScope:
    scope = _scopes.get((name, version))
    if scope is None:
        if len(_scopes) >= _MAX_SCOPES:
            _scopes.clear()
        scope = _scopes[(name, version)] = InstrumentationScope(name, version)
    return scope


def _span(row: tuple[Any, ...], resources: dict[int, Resource]) -> ReadableSpan:
    (trace_id, span_id, flags, parent_id, parent_remote, name, kind, start, end, code, description,
     attributes, events, links, scope_name, scope_version, resource_key) = row  # fmt: skip
    trace_flags = _flags(flags)
    return ReadableSpan(
        name=name,
        context=SpanContext(trace_id, span_id, False, trace_flags),
        parent=SpanContext(trace_id, parent_id, parent_remote, trace_flags)
        if parent_id is not None
        else None,
        resource=resources.get(resource_key) or Resource.get_empty(),
        attributes=attributes,
        # Tuples, as the SDK's span shows them: read as they are (events_of, links_of), not copied.
        events=tuple([Event(e_name, e_attributes, e_time) for e_name, e_time, e_attributes in events])
        if events
        else (),
        links=tuple([Link(_context(t, s, f), a) for t, s, f, a in links]) if links else (),
        kind=_KINDS[kind] if 0 <= kind < len(_KINDS) else SpanKind.INTERNAL,
        status=Status(_CODES[code], description) if description else _PLAIN_STATUSES[code],
        start_time=start,
        end_time=end,
        instrumentation_scope=_scope(scope_name, scope_version) if scope_name is not None else None,
    )


def _build(spec: dict[str, Any]) -> SpanExporter:
    from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter

    kind = spec.get("kind")
    inner: SpanExporter
    if kind == "local":
        from ghl_real_estate_ai.observability.local_store import LocalSpanExporter

        inner = LocalSpanExporter(Path(spec["path"]), int(spec["max_spans"]), float(spec["max_age_hours"]))
    elif kind in ("otlp", "otlp_http"):
        from ghl_real_estate_ai.observability._exporters import (
            OtlpConfig,
            build_otlp_span_exporter,
            quiet_exporter_logs,
        )

        otlp = OtlpConfig(str(spec["endpoint"]), dict(spec["headers"]), float(spec["timeout"]))
        inner, _ = build_otlp_span_exporter(kind, otlp)
        quiet_exporter_logs()
    else:
        raise ValueError(f"unknown trace writer kind {kind!r}")
    return RedactingSpanExporter(inner, capture_content=bool(spec.get("capture_content", False)))


def _answer(stdout: IO[bytes], seq: int, stored: int, failed: int) -> None:
    payload = marshal.dumps((seq, stored, failed))
    try:
        _write_all(stdout, _HEADER.pack(len(payload)) + payload)
        stdout.flush()
    except OSError:
        pass  # the app is gone; keep storing what is in the pipe


def main(argv: Sequence[str]) -> int:
    """The writer: read batches from stdin until it closes, store them, answer on stdout."""
    # The app stops us by closing the pipe, after its last spans: a Ctrl-C or SIGTERM
    # sent to the whole process group must not lose what is still in the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s trace writer: %(message)s")
    exporter = _build(json.loads(argv[1]))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    resources: dict[int, Resource] = {}
    stored = failed = 0
    try:
        while (message := _read_frame(stdin)) is not None:
            if message[0] == _SPANS:
                _, new_resources, rows = message
                for key, attributes, schema_url in new_resources:
                    resources[key] = Resource(attributes, schema_url)
                spans = [_span(row, resources) for row in rows]
                try:
                    ok = exporter.export(spans) is SpanExportResult.SUCCESS
                except Exception:  # never die on one bad batch
                    logging.exception("export of %d spans failed", len(spans))
                    ok = False
                if ok:
                    stored += len(spans)
                else:
                    failed += len(spans)
                _answer(stdout, 0, stored, failed)
            elif message[0] == _FLUSH:
                exporter.force_flush()
                _answer(stdout, message[1], stored, failed)
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
