"""``records.evolve`` is ``dataclasses.replace``: same records, same errors, for every kind of dataclass."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from ghl_real_estate_ai import records
from ghl_real_estate_ai.records import evolve
from ghl_real_estate_ai.storage.base import Contact, OutboxItem


@dataclass(slots=True, frozen=True)
class Frozen:
    name: str
    tags: list[str] = field(default_factory=list)
    size: int = 1


@dataclass
class Plain:
    name: str
    count: int = 0
    label: ClassVar[str] = "plain"
    derived: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.derived = f"{self.name}:{self.count}"


@dataclass
class WithInitVar:
    base: int
    total: int = 0
    bonus: InitVar[int] = 10

    def __post_init__(self, bonus: int) -> None:
        self.total = self.base + bonus


@dataclass
class Required:
    base: int
    other: int
    extra: InitVar[int]

    def __post_init__(self, extra: int) -> None:
        self.other += extra


@dataclass
class Single:
    value: int


def _same(record: Any, **changes: Any) -> None:
    expected = dataclasses.replace(record, **changes)
    got = evolve(record, **changes)
    assert type(got) is type(expected)
    assert got == expected
    if hasattr(got, "__dict__"):
        assert vars(got) == vars(expected)  # the fields == leaves out (init=False, set after)
    assert got is not record


@pytest.mark.parametrize(
    ("record", "changes"),
    [
        (Frozen("a", ["x"]), {"size": 3}),
        (Frozen("a", ["x"]), {}),
        (Frozen("a"), {"name": "b", "tags": ["y"], "size": 0}),
        (Plain("a", 2), {"count": 5}),  # __post_init__ runs again, as with replace()
        (WithInitVar(1), {"base": 2}),  # the InitVar's default is read, as replace() reads it
        (WithInitVar(1), {"base": 2, "bonus": 1}),
        (Required(1, 2, 3), {"extra": 4}),
        (Single(1), {"value": 2}),
        (
            Contact(contact_id="c1", location_id="loc", tags=["a"], state={"k": 1}),
            {"tags": ["b"], "created_at": datetime(2026, 1, 1, tzinfo=UTC)},
        ),
    ],
)
def test_evolve_builds_what_replace_builds(record: Any, changes: dict[str, Any]) -> None:
    _same(record, **changes)


def test_the_original_is_left_as_it_was_and_fields_are_not_copied_deeply() -> None:
    tags = ["a"]
    record = Frozen("a", tags)
    new = evolve(record, size=2)
    assert record == Frozen("a", ["a"], 1)
    assert new.tags is tags  # as replace(): the same objects in the new record


@pytest.mark.parametrize(
    ("record", "changes"),
    [
        (Frozen("a"), {"missing": 1}),  # not a field
        (Plain("a"), {"derived": "x"}),  # init=False
        (Plain("a"), {"label": "x"}),  # a ClassVar
        (Required(1, 2, 3), {"base": 2}),  # an InitVar without a default must be given
        (Frozen, {"size": 1}),  # a class, not an instance
        ("text", {}),  # not a dataclass
    ],
)
def test_evolve_refuses_what_replace_refuses_with_the_same_error(
    record: Any, changes: dict[str, Any]
) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        dataclasses.replace(record, **changes)
    with pytest.raises(expected.type, match=re.escape(str(expected.value))):
        evolve(record, **changes)


def test_a_record_class_is_planned_once_and_the_plan_table_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(records, "_PLANS", {})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    item = OutboxItem(1, "k", "message", "c", {}, "pending", 0, now, now)
    evolve(item, status="sent")
    evolve(item, status="dead")
    assert list(records._PLANS) == [OutboxItem]
    monkeypatch.setattr(records, "_MAX_PLANS", 1)
    evolve(Frozen("a"), size=2)
    assert list(records._PLANS) == [Frozen]
