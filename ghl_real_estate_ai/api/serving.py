"""How the app is served: the uvicorn event loop and HTTP parser, chosen and measured.

uvloop (an event loop on libuv) and httptools (the Node.js HTTP parser) are
dependencies of the package: compiled, they do in C what the pure-Python
asyncio loop and h11 do per request. :func:`server_options` names them for
uvicorn, falling back to asyncio and h11 where they are not installed (uvloop
has no Windows build); ``jorge serve`` and the benchmarks' servers use it, and
plain ``uvicorn ghl_real_estate_ai.app:app`` makes the same choice by itself.
:func:`server_facts` says what actually runs; the app's ``started`` log line
carries it. This module imports nothing heavy, so a bare benchmark server can
use it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any

__all__ = ["server_facts", "server_options"]


def server_options() -> dict[str, str]:
    """uvicorn's ``loop`` and ``http`` options: uvloop and httptools when installed."""
    return {
        "loop": "uvloop" if find_spec("uvloop") is not None else "asyncio",
        "http": "httptools" if find_spec("httptools") is not None else "h11",
    }


def server_facts(receive: Callable[..., Any] | None = None) -> dict[str, str]:
    """What serves the app, measured: ``event_loop`` (uvloop, asyncio) and ``http_parser``.

    Call it on the event loop. The loop is the running one. The parser is read from the
    server's configuration, which uvicorn's lifespan ``receive`` carries (it is a method of
    uvicorn's lifespan handler); under another server, or with no server at all
    (``app.running()``), it is ``unknown``.
    """
    loop = type(asyncio.get_running_loop())
    config = getattr(getattr(receive, "__self__", None), "config", None)
    protocol = getattr(config, "http_protocol_class", None)
    parser = "unknown"
    if isinstance(protocol, type):
        # uvicorn.protocols.http.httptools_impl -> httptools; ...h11_impl -> h11
        parser = protocol.__module__.rsplit(".", 1)[-1].removesuffix("_impl")
    return {"event_loop": loop.__module__.split(".", 1)[0], "http_parser": parser}
