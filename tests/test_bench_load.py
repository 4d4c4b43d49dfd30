"""The throughput bench's load generator sends the bench's messages and counts every bad answer (issue 14).

``bench/webhook_overhead.py`` drives the server with wrk and a Lua script. Until
2026-12-02 that script sent the body "nil" in every webhook (its texts were not a
Lua table) and read its failure count from a Lua state no request ever ran in, so
an answer other than ``processed`` went unnoticed. Here wrk drives a real HTTP
server that records what it is sent.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import webhook_overhead as bench

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (scripts/system-deps)")


@contextmanager
def _server(status: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server answering every POST 200 ``{"status": status}``; yields its URL and the bodies."""
    bodies: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            bodies.append(json.loads(raw))
            answer = json.dumps({"status": status}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_every_webhook_is_one_of_the_bench_texts_signed_with_a_name_no_other_sends(tmp_path: Path) -> None:
    with _server("processed") as (url, bodies):
        run = bench.wrk(url, 1, 2, tmp_path)
    assert run.count > 0 and len(bodies) >= run.count
    texts = [body["body"] for body in bodies]
    assert all(text.startswith(bench.TEXTS) and text.endswith(" here.") for text in texts), texts[:3]
    assert len(set(texts)) == len(texts)  # no message is sent twice
    assert len({t for t in bench.TEXTS if any(text.startswith(t) for text in texts)}) == len(bench.TEXTS)


def test_an_answer_that_is_not_processed_fails_the_run(tmp_path: Path) -> None:
    with _server("queued") as (url, _), pytest.raises(SystemExit, match="were not 200 processed"):
        bench.wrk(url, 1, 2, tmp_path)


def test_the_names_are_the_same_in_python_and_in_the_load_script(tmp_path: Path) -> None:
    with _server("processed") as (url, bodies):
        bench.wrk(url, 1, 1, tmp_path)
    by_request = {int(body["messageId"].rsplit("-", 1)[1]): body["body"] for body in bodies}
    for n, text in list(by_request.items())[:50]:
        assert text == f"{bench.TEXTS[n % len(bench.TEXTS)]} {bench.signature(n)} here."
