"""Real OTLP receivers for tests: a gRPC one, an HTTP one, and a black hole.

Import them from any test (``from tests.observability.receivers import OTLPGrpcReceiver``);
each listens on a free port of 127.0.0.1 and is a context manager::

    with OTLPGrpcReceiver() as receiver:
        setup_observability(exporter_type="otlp", endpoint=receiver.endpoint)
        ...
        flush_observability()
        spans = receiver.wait_for(lambda spans: len(spans) >= 3)
        assert spans[0].resource["service.name"] == "enterprisehub"

* :class:`OTLPGrpcReceiver` is a ``grpc.server`` implementing the official
  opentelemetry-proto ``TraceService`` and ``MetricsService``.
* :class:`OTLPHttpReceiver` is a stdlib HTTP server taking protobuf (optionally
  gzip) ``POST /v1/traces`` and ``POST /v1/metrics``.
* :class:`BlackHole` accepts TCP connections and never answers, the worst kind
  of dead collector.

Both receivers keep every request with the headers it came with
(:meth:`~_Receiver.headers`), and flatten what arrived into
:class:`ReceivedSpan` / :class:`ReceivedMetric` rows.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.trace import SpanKind, StatusCode

__all__ = [
    "BlackHole",
    "OTLPGrpcReceiver",
    "OTLPHttpReceiver",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedMetric",
    "ReceivedSpan",
    "closed_port",
    "self_signed_localhost",
]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    """Turn repeated KeyValue into a dict of Python values (lists stay lists)."""
    result: dict[str, Any] = {}
    item: KeyValue
    for item in items:
        result[item.key] = _value(item.value)
    return result


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event as it arrived."""

    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedLink:
    """A span link as it arrived (ids in lower-case hex)."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver got it, ids in lower-case hex.

    ``parent_span_id`` is None for a root span; ``kind`` and ``status_code`` use the
    OpenTelemetry API enums so tests compare against ``SpanKind.SERVER`` etc.
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: SpanKind
    status_code: StatusCode
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    links: list[ReceivedLink]
    resource: dict[str, Any]
    scope: str
    start_time_unix_nano: int
    end_time_unix_nano: int


@dataclass(frozen=True)
class ReceivedMetric:
    """One metric data point: the sum for counters, count and sum for histograms."""

    name: str
    kind: str  # "sum", "gauge" or "histogram"
    attributes: dict[str, Any]
    value: float | None
    count: int | None
    resource: dict[str, Any]


def _flatten_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        # proto kinds start at 1 (0 is UNSPECIFIED); the API's at 0
                        kind=SpanKind(max(span.kind - 1, 0)),
                        status_code=StatusCode(span.status.code),
                        attributes=_attributes(span.attributes),
                        events=[ReceivedEvent(e.name, _attributes(e.attributes)) for e in span.events],
                        links=[
                            ReceivedLink(
                                link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes)
                            )
                            for link in span.links
                        ],
                        resource=resource,
                        scope=scope_spans.scope.name,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                    )
                )
    return spans


def _flatten_metrics(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[ReceivedMetric]:
    rows: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind == "histogram":
                    for point in metric.histogram.data_points:
                        rows.append(
                            ReceivedMetric(
                                metric.name,
                                "histogram",
                                _attributes(point.attributes),
                                point.sum,
                                point.count,
                                resource,
                            )
                        )
                elif kind in ("sum", "gauge"):
                    points = metric.sum.data_points if kind == "sum" else metric.gauge.data_points
                    for number in points:
                        value = (
                            number.as_double if number.WhichOneof("value") == "as_double" else number.as_int
                        )
                        rows.append(
                            ReceivedMetric(
                                metric.name, kind, _attributes(number.attributes), value, None, resource
                            )
                        )
    return rows


@dataclass
class _Collected:
    """Requests received so far, guarded by one condition variable."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class _Receiver:
    """What both receivers share: storage, flattening and waiting."""

    endpoint: str

    def __init__(self) -> None:
        self._collected = _Collected()

    def _record_traces(
        self, request: trace_service_pb2.ExportTraceServiceRequest, headers: dict[str, str]
    ) -> None:
        with self._collected.cond:
            self._collected.trace_requests.append(request)
            self._collected.headers.append(headers)
            self._collected.cond.notify_all()

    def _record_metrics(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, headers: dict[str, str]
    ) -> None:
        with self._collected.cond:
            self._collected.metric_requests.append(request)
            self._collected.headers.append(headers)
            self._collected.cond.notify_all()

    def trace_requests(self) -> list[trace_service_pb2.ExportTraceServiceRequest]:
        """Every ExportTraceServiceRequest received, in order."""
        with self._collected.cond:
            return list(self._collected.trace_requests)

    def headers(self) -> list[dict[str, str]]:
        """Headers (gRPC metadata or HTTP headers, keys lower case) of every request, in order."""
        with self._collected.cond:
            return [dict(h) for h in self._collected.headers]

    def spans(self) -> list[ReceivedSpan]:
        """Every span received, flattened, in arrival order."""
        with self._collected.cond:
            requests = list(self._collected.trace_requests)
        return [span for request in requests for span in _flatten_spans(request)]

    def metrics(self) -> list[ReceivedMetric]:
        """Every metric data point received, flattened, in arrival order."""
        with self._collected.cond:
            requests = list(self._collected.metric_requests)
        return [row for request in requests for row in _flatten_metrics(request)]

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Wait until ``predicate(spans)`` holds, then return the spans.

        Raises:
            AssertionError: the predicate still fails after ``timeout`` seconds
                (the message shows the span names that did arrive).
        """
        return self._wait(self.spans, predicate, timeout)

    def wait_for_metrics(
        self, predicate: Callable[[list[ReceivedMetric]], bool], timeout: float = 10.0
    ) -> list[ReceivedMetric]:
        """Like :meth:`wait_for`, over metric data points."""
        return self._wait(self.metrics, predicate, timeout)

    def _wait(
        self, read: Callable[[], list[Any]], predicate: Callable[[list[Any]], bool], timeout: float
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            items = read()
            if predicate(items):
                return items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = sorted({getattr(i, "name", "?") for i in items})
                raise AssertionError(
                    f"receiver {self.endpoint}: condition not met in {timeout} s; got {names}"
                )
            with self._collected.cond:
                self._collected.cond.wait(min(remaining, 0.2))

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._collected.cond:
            self._collected.trace_requests.clear()
            self._collected.metric_requests.clear()
            self._collected.headers.clear()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OTLPGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._record_traces(request, {k: str(v) for k, v in context.invocation_metadata()})
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OTLPGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._receiver._record_metrics(request, {k: str(v) for k, v in context.invocation_metadata()})
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OTLPGrpcReceiver(_Receiver):
    """An OTLP/gRPC collector on 127.0.0.1.

    Plaintext by default, ``endpoint`` ``http://127.0.0.1:<port>``. Given
    ``tls=(certificate_pem, private_key_pem)`` (a certificate for ``localhost``)
    it serves TLS only and ``endpoint`` is ``https://localhost:<port>``.
    """

    def __init__(self, tls: tuple[bytes, bytes] | None = None, port: int = 0) -> None:
        super().__init__()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), self._server)
        if tls is None:
            self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
            self.endpoint = f"http://127.0.0.1:{self.port}"
        else:
            certificate, key = tls
            credentials = grpc.ssl_server_credentials([(key, certificate)])
            self.port = self._server.add_secure_port(f"127.0.0.1:{port}", credentials)
            self.endpoint = f"https://localhost:{self.port}"

    def start(self) -> Self:
        """Start serving."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving (in-flight calls get a moment to finish)."""
        self._server.stop(grace=0.5).wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class OTLPHttpReceiver(_Receiver):
    """An OTLP/HTTP (protobuf) collector; ``endpoint`` is ``http://127.0.0.1:<port>`` (no path)."""

    def __init__(self) -> None:
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                response: Any
                if self.path == "/v1/traces":
                    trace_request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver._record_traces(trace_request, headers)
                    response = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    metric_request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    receiver._record_metrics(metric_request, headers)
                    response = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_error(404, f"no OTLP signal at {self.path!r}")
                    return
                payload = response.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-http-receiver", daemon=True
        )

    def start(self) -> Self:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class BlackHole:
    """A TCP listener that accepts connections, reads, and never answers.

    ``endpoint`` is ``http://127.0.0.1:<port>``: an exporter pointed at it hangs
    until its own timeout, like a collector behind a dropping firewall.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="otlp-black-hole", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(False)  # bytes pile up in the kernel buffer; nobody replies
            self._connections.append(conn)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._connections:
            conn.close()
        self._listener.close()


def self_signed_localhost() -> tuple[bytes, bytes]:
    """A fresh self-signed certificate for ``localhost`` / 127.0.0.1: ``(certificate_pem, key_pem)``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def closed_port() -> str:
    """An ``http://127.0.0.1:<port>`` endpoint nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
