"""Headless Chromium for the page tests: launching it, and checking that hostile text stayed inert.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/system-deps`` installs it),
driven by Playwright. Without it the tests skip, except with ``CI=true``, where
they fail: the browser tests must run there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """A headless Chromium for the block; skips (fails with ``CI=true``) when it is not installed."""
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI=true requires the browser tests")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/system-deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageWatch:
    """What a page did that a test must see: dialogs it opened (dismissed at once) and script errors."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def watch(page: Page) -> PageWatch:
    """Start recording ``page``'s dialogs (``alert()`` and friends) and uncaught script errors."""
    seen = PageWatch()
    page.on("dialog", lambda dialog: (seen.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))
    return seen


def assert_inert(page: Page, seen: PageWatch, scripts: Sequence[str]) -> None:
    """Nothing injected ran: no ``<img>`` exists, the page's scripts are exactly ``scripts`` (their
    ``src``, in order), ``window.__pwned`` (which the hostile payloads set) is unset and no dialog opened."""
    assert page.locator("img").count() == 0
    sources = page.eval_on_selector_all("script[src]", "els => els.map(e => e.getAttribute('src'))")
    inline = page.eval_on_selector_all(
        "script:not([src]):not([type='application/json'])", "els => els.length"
    )
    assert (sources, inline) == (list(scripts), 0)
    assert page.evaluate("window.__pwned") is None
    assert seen.dialogs == []
