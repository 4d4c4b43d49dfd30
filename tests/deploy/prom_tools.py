"""Finding the Prometheus tools the deploy tests run (Debian's prometheus and prometheus-alertmanager)."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def tool(*names: str) -> str:
    """The path of the first of ``names`` on PATH; skips (fails with CI=true) when none is installed."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"{' or '.join(names)} is not installed (scripts/system-deps installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
