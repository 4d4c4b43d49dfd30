"""Instrumentation switched off for a block, at a third of the contrib helper's cost (issue 14).

Internal. ``opentelemetry.instrumentation.utils.suppress_instrumentation()`` is two
nested generator context managers that copy the current context twice. The store
and the Redis cache enter it around every pooled connection's check-out, BEGIN,
COMMIT, release and command (about ten times per webhook on PostgreSQL with Redis),
so its own cost showed. :func:`suppressed` sets the same two context keys in one
copy and restores the context on exit: what an instrumentation reads inside
(``is_instrumentation_enabled()`` and the plain ``"suppress_instrumentation"`` key)
is the same.
"""

from __future__ import annotations

from contextvars import Token
from types import TracebackType

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, get_current
from opentelemetry.context.context import Context
from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY_PLAIN

__all__ = ["suppressed"]


def suppressed() -> _Suppressed:
    """``with suppressed():`` is ``with suppress_instrumentation():`` (sync and async code alike)."""
    return _Suppressed()


class _Suppressed:
    __slots__ = ("_token",)

    def __enter__(self) -> None:
        # The plain key is the one older instrumentations read.
        values = {
            **get_current(),
            _SUPPRESS_INSTRUMENTATION_KEY: True,
            _SUPPRESS_INSTRUMENTATION_KEY_PLAIN: True,
        }
        self._token: Token[Context] = attach(Context(values))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        detach(self._token)
