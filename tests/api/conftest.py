"""Fixtures of the page tests: ``chromium`` is a headless browser (see ``_browser.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from _browser import launch_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed after the test; skips without it (fails with ``CI=true``)."""
    with launch_chromium() as browser:
        yield browser
