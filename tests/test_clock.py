"""The injectable clocks and the parser for typed instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ghl_real_estate_ai.clock import Clock, ManualClock, SystemClock, ensure_utc, parse_instant


def test_system_clock_tells_aware_utc_time_and_is_callable() -> None:
    clock = SystemClock()
    before = datetime.now(UTC)
    seen = clock.now()
    assert seen.tzinfo is UTC
    assert before <= seen <= datetime.now(UTC)
    assert clock().tzinfo is UTC
    assert isinstance(clock, Clock)


def test_manual_clock_moves_only_when_advanced() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == start == clock()
    assert clock.advance(days=3, hours=2) == start + timedelta(days=3, hours=2)
    assert clock.advance(timedelta(minutes=1), seconds=30) == start + timedelta(days=3, hours=2, seconds=90)
    clock.set(start)
    assert clock.now() == start
    assert isinstance(clock, Clock)


def test_manual_clock_refuses_to_run_backwards() -> None:
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="negative step"):
        clock.advance(days=-1)


def test_naive_times_are_read_as_utc_and_offsets_converted() -> None:
    assert ManualClock(datetime(2025, 1, 1)).now() == datetime(2025, 1, 1, tzinfo=UTC)
    plus_two = datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert ensure_utc(plus_two) == datetime(2025, 1, 1, tzinfo=UTC)
    assert ensure_utc(plus_two).tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-04T09:00:00Z", datetime(2025, 1, 4, 9, tzinfo=UTC)),
        ("2025-01-04T11:00:00+02:00", datetime(2025, 1, 4, 9, tzinfo=UTC)),
        ("2025-01-04T09:00:00", datetime(2025, 1, 4, 9, tzinfo=UTC)),
        (" 2025-01-04 ", datetime(2025, 1, 4, tzinfo=UTC)),
    ],
)
def test_parse_instant_accepts_iso_8601(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize("bad", ["tomorrow", "2025-13-01", "", "2025-01-04T25:00"])
def test_parse_instant_rejects_garbage_with_one_clear_line(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_instant(bad, name="--now")
    message = str(info.value)
    assert message.startswith("--now must be an ISO-8601 time")
    assert repr(bad) in message
    assert "\n" not in message
