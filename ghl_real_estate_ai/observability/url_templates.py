"""Name HTTP client spans ``{method} {url.template}``, as the HTTP semantic conventions allow.

The httpx instrumentation names a client span by its method alone (``POST``), so every
GHL call looks the same in a trace. Register the API's path templates once; each CLIENT
span whose URL path ends with a registered template is renamed (``POST
/contacts/{contactId}/tags``) and gets the ``url.template`` attribute. Ids stay in the
URL attributes, never in the name (no high-cardinality span names)::

    register_url_templates(["/contacts/{contactId}/tags", "/conversations/messages"])

:class:`UrlTemplateSpanProcessor` does the renaming; the set-up adds it to the provider.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import SpanKind

__all__ = ["URL_TEMPLATE", "UrlTemplateSpanProcessor", "match_url_template", "register_url_templates"]

URL_TEMPLATE: Final = "url.template"
"""The attribute holding the matched template (HTTP semantic conventions)."""

_URL_KEYS: Final = ("url.full", "http.url")
_lock = threading.Lock()
_templates: dict[str, re.Pattern[str]] = {}
_ordered: tuple[tuple[str, re.Pattern[str]], ...] = ()


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", template)
    body = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts if part)
    return re.compile(f"(?:^|/){body.lstrip('/')}/?$")


def register_url_templates(templates: Iterable[str]) -> None:
    """Add path templates such as ``/contacts/{contactId}/tags`` (idempotent).

    Args:
        templates: paths with ``{name}`` for each variable segment.
    """
    global _ordered
    with _lock:
        for template in templates:
            if template not in _templates:
                _templates[template] = _compile(template)
        # Longest first, so /contacts/{id}/tags wins over a shorter template it also ends with.
        _ordered = tuple(sorted(_templates.items(), key=lambda item: -len(item[0])))


def match_url_template(url: str) -> str | None:
    """The registered template whose pattern the URL's path ends with, if any."""
    path = urlsplit(url).path
    for template, pattern in _ordered:
        if pattern.search(path):
            return template
    return None


class UrlTemplateSpanProcessor(SpanProcessor):
    """Renames CLIENT spans named by their method alone to ``{method} {url.template}``."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.kind is not SpanKind.CLIENT or not _ordered or " " in span.name:
            return
        attributes = span.attributes or {}
        url = next((attributes[key] for key in _URL_KEYS if key in attributes), None)
        if not isinstance(url, str):
            return
        template = match_url_template(url)
        if template is not None:
            span.set_attribute(URL_TEMPLATE, template)
            span.update_name(f"{span.name} {template}")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
