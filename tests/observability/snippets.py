"""Run the code examples of a Markdown document as written (top-level ``await`` allowed).

Used by the tests of the user's guide and of ``docs/tracing.md``::

    for block in python_blocks(Path("docs/tracing.md").read_text()):
        namespace = await run_snippet(block, {"contact_id": "c1"})
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from typing import Any

__all__ = ["python_blocks", "run_snippet"]

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```", re.DOTALL | re.MULTILINE
)


def python_blocks(markdown: str) -> list[str]:
    """The ```` ```python ```` blocks of ``markdown``, dedented, in order."""
    return [textwrap.dedent(match.group("body")) for match in _FENCE.finditer(markdown)]


async def run_snippet(source: str, namespace: dict[str, Any], name: str = "<snippet>") -> dict[str, Any]:
    """Execute ``source`` in ``namespace`` as a module body that may ``await``; returns the namespace."""
    code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        await eval(code, namespace)
    else:
        exec(code, namespace)
    return namespace
