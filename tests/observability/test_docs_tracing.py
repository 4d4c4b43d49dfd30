"""Every ```python example of docs/tracing.md runs as written (tracing on, fresh providers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ghl_real_estate_ai.observability.testing import capture_spans
from tests.observability.snippets import python_blocks, run_snippet

DOC = Path(__file__).resolve().parents[2] / "docs" / "tracing.md"
BLOCKS = python_blocks(DOC.read_text(encoding="utf-8"))


def test_the_page_has_its_examples() -> None:
    assert len(BLOCKS) >= 8
    assert all(block.strip() for block in BLOCKS)


@pytest.fixture(autouse=True)
def _no_observability_left_behind() -> Iterator[None]:
    yield
    try:
        from ghl_real_estate_ai.observability.otel_config import shutdown_observability
    except ImportError:
        return
    shutdown_observability(2.0)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda index: f"example-{index + 1}")
async def test_example_runs(index: int) -> None:
    block = BLOCKS[index]
    if "otel_config" in block:
        # The set-up example installs its own providers: run it as a user would, outside a capture.
        await run_snippet(block, {}, f"docs/tracing.md example {index + 1}")
        return
    # The examples check their own results with assert; tracing is on for them.
    with capture_spans():
        await run_snippet(block, {}, f"docs/tracing.md example {index + 1}")
