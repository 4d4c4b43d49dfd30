"""Injectable clocks, so time-driven code (follow-ups, outbox retries) can be tested without waiting.

Production code takes a :class:`Clock` and asks it for ``now()``; it never calls
``datetime.now()`` itself. Use :class:`SystemClock` in the app and
:class:`ManualClock` in tests and simulations::

    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    clock.advance(days=3)
    clock.now()  # 2025-01-04 00:00 UTC

Every clock is also callable (``clock()`` is ``clock.now()``), so one can be
passed wherever a ``Callable[[], datetime]`` is expected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "ensure_utc", "parse_instant"]


def ensure_utc(value: datetime, *, name: str = "datetime") -> datetime:
    """Return ``value`` as a timezone-aware UTC datetime.

    A naive value is read as UTC (the service stores and compares UTC only).

    Args:
        value: the datetime to normalise.
        name: what the value is, for the error message.

    Returns:
        The same instant in UTC.

    Raises:
        TypeError: ``value`` is not a datetime.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """Something that tells the time, always timezone-aware UTC."""

    def now(self) -> datetime:
        """The current instant (UTC)."""
        ...

    def __call__(self) -> datetime:
        """Same as :meth:`now`."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """The current instant (UTC)."""
        return datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to: for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        """Start at ``start`` (naive means UTC), or at the current instant."""
        self._now = ensure_utc(start, name="start") if start is not None else datetime.now(UTC)

    def now(self) -> datetime:
        """The clock's current instant (UTC)."""
        return self._now

    def __call__(self) -> datetime:
        return self._now

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move forward by ``delta`` and/or the given units.

        Returns:
            The new current instant.

        Raises:
            ValueError: the total step is negative (a clock does not run backwards; use :meth:`set`).
        """
        step = (delta or timedelta()) + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step < timedelta():
            raise ValueError(f"ManualClock.advance got a negative step {step!r}; use set() to go back")
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive means UTC)."""
        self._now = ensure_utc(when, name="when")

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()!r})"


def parse_instant(text: str, *, name: str = "time") -> datetime:
    """Parse an ISO-8601 instant typed by a person: ``2025-01-04T09:00:00Z``, ``...+02:00``, ``2025-01-04``.

    A value without an offset is read as UTC.

    Args:
        text: the ISO-8601 text.
        name: what the value is (e.g. ``--now``), for the error message.

    Returns:
        The instant in UTC.

    Raises:
        ValueError: one line naming ``name``, showing the bad value and an example of a good one.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except (TypeError, ValueError, AttributeError):
        raise ValueError(
            f"{name} must be an ISO-8601 time such as '2025-01-04T09:00:00Z', got {text!r}"
        ) from None
    return ensure_utc(parsed, name=name)
