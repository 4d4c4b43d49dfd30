"""Copies of dataclass records with some fields changed, at a fraction of ``dataclasses.replace``'s cost.

``dataclasses.replace`` walks the class's fields and their flags at every call
(about 350 Python opcodes for a ten-field record, before ``__init__``); a turn of
a webhook makes a dozen such copies (contacts, outbox items, slots, facts).
:func:`evolve` works out once per class which fields ``__init__`` takes and then
reads them with one ``operator.attrgetter`` call: the same constructor with the
same arguments, so ``__post_init__`` and frozen classes behave as with
``replace``. Python 3.13's ``copy.replace`` would do; this package runs on 3.11.
"""

from __future__ import annotations

import dataclasses
import inspect
from operator import attrgetter
from typing import Any, Final, TypeVar

__all__ = ["evolve"]

_T = TypeVar("_T")

# Per class: a getter of the values of the fields __init__ takes, with their names; None when
# the class needs replace() itself.
_PLANS: dict[type, tuple[attrgetter[Any], tuple[str, ...]] | None] = {}
_MAX_PLANS: Final = 256  # classes, not instances: a program has a handful


def _plan(cls: type) -> tuple[attrgetter[Any], tuple[str, ...]] | None:
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    try:
        takes = tuple(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return None
    if takes != names or len(names) < 2:
        # InitVars (replace() must be given them) or a hand-written __init__: replace() itself.
        # One name: attrgetter would return the value, not a tuple of one.
        return None
    return attrgetter(*names), names


def evolve(record: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace(record, **changes)``: a new record built by the class's ``__init__``.

    Args:
        record: a dataclass instance.
        **changes: the fields to change.

    Returns:
        The new record; ``record`` itself is left as it was.

    Raises:
        TypeError: ``record`` is not a dataclass instance, or a change names no field.
        ValueError: a change names a field ``__init__`` does not take.
    """
    cls = type(record)
    try:
        plan = _PLANS[cls]
    except KeyError:
        if not dataclasses.is_dataclass(record) or isinstance(record, type):
            return dataclasses.replace(record, **changes)  # type: ignore[type-var]  # raises its TypeError
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[cls] = _plan(cls)
    if plan is None:
        return dataclasses.replace(record, **changes)  # type: ignore[type-var]
    getter, names = plan
    values = dict(zip(names, getter(record), strict=True))
    size = len(values)
    values.update(changes)
    if len(values) != size:  # a change that is not an __init__ field: replace()'s own error
        return dataclasses.replace(record, **changes)  # type: ignore[type-var]
    return cls(**values)
