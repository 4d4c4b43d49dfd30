"""A shorter path through the metrics SDK for our own instruments (issue 14).

Internal. Every ``Counter.add`` and ``Histogram.record`` of the SDK cleans the
attributes mapping again (``Measurement.__post_init__``), then, in each reader's
storage and each view, copies it, hashes it into an aggregation key (keys sorted
with a lambda, a type check per value) and looks the aggregation up: about 500
Python opcodes per measurement, and a webhook makes nine of them, sampled or not.
Our attribute sets are few, small and made of plain strings, so that work gives
the same answer every time.

:func:`fast_counter` and :func:`fast_histogram` wrap an SDK instrument so that, per
distinct attribute set, the SDK's own path runs for the first measurement; the
wrapper then remembers what that path found (the cleaned attributes, and the
aggregation each view of each reader made for them) and sends the next
measurements of that set straight to the SDK's exemplar filter and to those
aggregations' ``aggregate``, with a ``Measurement`` equal to the one the SDK would
have built. Anything else takes the SDK's path: attributes that are not a ``dict``
of non-empty ``str`` keys and ``str`` values, a value that is negative or not
finite, a disabled instrument, a changed set of readers, a view that keeps only
some attribute keys or drops the instrument. Collected data is the SDK's: same
points, sums, buckets, exemplars and start times.

The path relies on a few SDK internals (the measurement consumer's readers and
exemplar filter, each storage's views per instrument, each view's aggregations by
key); :func:`available` checks the code that uses them once, and without them
the wrappers are not made: the SDK's instruments record as they always did. A new meter provider gives new
instruments, hence new wrappers: nothing is kept across providers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from time import time_ns
from typing import Any, Final, Protocol

from opentelemetry.attributes import _clean_attribute_value
from opentelemetry.context import Context, get_current
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics._internal import _view_instrument_match as _vim
from opentelemetry.sdk.metrics._internal.aggregation import _Aggregation, _DropAggregation
from opentelemetry.sdk.metrics._internal.instrument import Counter as SdkCounter
from opentelemetry.sdk.metrics._internal.instrument import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal.instrument import _Synchronous
from opentelemetry.sdk.metrics._internal.measurement import Measurement
from opentelemetry.sdk.metrics._internal.measurement_consumer import SynchronousMeasurementConsumer
from opentelemetry.sdk.metrics._internal.metric_reader_storage import MetricReaderStorage

__all__ = [
    "MAX_ATTRIBUTE_SETS",
    "Adder",
    "FastCounter",
    "FastHistogram",
    "Recorder",
    "available",
    "fast_counter",
    "fast_histogram",
]

MAX_ATTRIBUTE_SETS: Final = 1000
"""Attribute sets remembered per instrument; past this many, new ones take the SDK's path every time."""

_INF: Final = float("inf")
_MEASUREMENT_FIELDS: Final = ("value", "time_unix_nano", "instrument", "context", "attributes")

# The names the SDK functions we stand in for use, as of opentelemetry-sdk 1.45: any other
# code there (a cardinality limit, an aggregation dropped on collection, a new check on a
# record) and the shorter path turns itself off rather than guess.
_EXPECTED_NAMES: Final = {
    SdkCounter.add: {
        "Measurement", "_is_enabled", "_logger", "_measurement_consumer", "add", "consume_measurement",
        "get_current", "isfinite", "math", "name", "super", "time_ns", "warning",
    },
    SdkHistogram.record: {
        "Measurement", "_is_enabled", "_logger", "_measurement_consumer", "consume_measurement",
        "get_current", "isfinite", "math", "name", "record", "super", "time_ns", "warning",
    },
    _Synchronous._is_enabled: {"_meter_config", "is_enabled"},
    Measurement.__post_init__: {
        "Mapping", "__setattr__", "_clean_attribute_value", "_logger", "attributes", "isinstance", "object",
        "type", "warning",
    },
    SynchronousMeasurementConsumer.consume_measurement: {
        "_reader_storages", "_sdk_config", "attributes", "consume_measurement", "context", "exemplar_filter",
        "should_sample", "time_unix_nano", "value", "values",
    },
    MetricReaderStorage.consume_measurement: {
        "_get_or_init_view_instrument_match", "consume_measurement", "instrument",
    },
    MetricReaderStorage._get_or_init_view_instrument_match: {
        "_DEFAULT_VIEW", "_ViewInstrumentMatch", "_handle_view_instrument_match",
        "_instrument_class_aggregation", "_instrument_view_instrument_matches", "_lock", "append",
    },
    _vim._ViewInstrumentMatch.consume_measurement: {
        "DefaultAggregation", "__class__", "_aggregation", "_attribute_keys", "_attributes_aggregation",
        "_create_aggregation", "_exemplar_reservoir_factory", "_hash_attributes", "_instrument",
        "_instrument_class_aggregation", "_lock", "_view", "aggregate", "attributes", "dict", "isinstance",
        "items", "time_ns",
    },
    _vim._ViewInstrumentMatch.collect: {"_attributes_aggregation", "_lock", "append", "collect", "values"},
}  # fmt: skip

_new = object.__new__
_set = object.__setattr__


def _measurement(value: float, time: int, instrument: Any, context: Context, attributes: Any) -> Measurement:
    """``Measurement(...)`` with attributes already cleaned: ``__post_init__`` would clean them again."""
    measurement: Measurement = _new(Measurement)
    _set(
        measurement,
        "__dict__",
        {
            "value": value,
            "time_unix_nano": time,
            "instrument": instrument,
            "context": context,
            "attributes": attributes,
        },
    )
    return measurement


@functools.cache
def available() -> bool:
    """True when the installed SDK has the internals the shorter path relies on (checked once)."""
    try:
        context = Context()
        probe = _measurement(1, 2, None, context, {"k": "v"})
        return (
            all(set(function.__code__.co_names) == names for function, names in _EXPECTED_NAMES.items())
            and tuple(field.name for field in dataclasses.fields(Measurement)) == _MEASUREMENT_FIELDS
            and probe == Measurement(1, 2, None, context, {"k": "v"})  # type: ignore[arg-type]
        )
    except Exception:  # any surprise: the SDK's path
        return False


_Entry = tuple[object, Mapping[str, Any], tuple[_Aggregation[Any], ...]]
"""(the consumer's reader storages it was found with, the cleaned attributes, shared by the set's
measurements as nothing in the SDK changes them, and the aggregations in the SDK's order)."""


def _key(attributes: Mapping[str, Any]) -> tuple[tuple[Any, ...], tuple[type, ...]]:
    """An attribute set's cache key. The value types are in it: the SDK keys a str subclass
    (a StrEnum) apart from the equal str."""
    return tuple(attributes.items()), tuple(map(type, attributes.values()))


class _Fast:
    """An SDK synchronous instrument whose known attribute sets skip cleaning and hashing."""

    __slots__ = ("_consumer", "_entries", "_instrument", "_sdk")

    def __init__(self, instrument: Any, sdk_method: Any) -> None:
        self._instrument = instrument
        self._sdk = sdk_method
        self._consumer: SynchronousMeasurementConsumer = instrument._measurement_consumer
        self._entries: dict[tuple[tuple[Any, ...], tuple[type, ...]], _Entry] = {}

    def _measure(
        self, amount: float, attributes: Mapping[str, Any] | None = None, context: Context | None = None
    ) -> None:
        consumer = self._consumer
        try:
            storages, clean, aggregations = self._entries[_key(attributes)]  # type: ignore[arg-type]
        except (AttributeError, KeyError, TypeError):
            self._sdk(amount, attributes, context)
            self._learn(attributes)
            return
        config = self._instrument._meter_config
        if (
            storages is not consumer._reader_storages
            or not 0 <= amount < _INF  # also false for NaN: the SDK warns and drops it
            or (config is not None and not config.is_enabled)
        ):
            self._sdk(amount, attributes, context)
            if storages is not consumer._reader_storages:
                self._learn(attributes)
            return
        # What Counter.add / Histogram.record and the consumer do, minus cleaning and hashing.
        time = time_ns()
        context = context or get_current()
        measurement = _measurement(amount, time, self._instrument, context, clean)
        sample = consumer._sdk_config.exemplar_filter.should_sample(amount, time, clean, context)
        for aggregation in aggregations:
            aggregation.aggregate(measurement, sample)

    def _learn(self, attributes: Mapping[str, Any] | None) -> None:
        """After the SDK's path: remember the aggregations it used for ``attributes``, if plain."""
        if (
            type(attributes) is not dict
            or len(self._entries) >= MAX_ATTRIBUTE_SETS
            or not all(type(k) is str and k and type(v) is str for k, v in attributes.items())
        ):
            return
        storages = self._consumer._reader_storages
        # What the SDK's path just did: clean (Measurement), then per storage and view, copy and hash.
        clean = _clean_attribute_value(attributes, None)
        aggr_key = _vim._hash_attributes(dict(clean))
        aggregations: list[_Aggregation[Any]] = []
        for storage in storages.values():
            matches = storage._instrument_view_instrument_matches.get(self._instrument)
            if not matches:
                return
            for match in matches:
                aggregation = match._attributes_aggregation.get(aggr_key)
                if (
                    aggregation is None  # not recorded (disabled instrument, value refused)
                    or match._view._attribute_keys is not None
                    or isinstance(aggregation, _DropAggregation)
                ):
                    return
                aggregations.append(aggregation)
        self._entries[_key(attributes)] = (storages, clean, tuple(aggregations))


class FastCounter(_Fast):
    """A counter of the SDK, with :meth:`add` taking the shorter path for known attribute sets."""

    __slots__ = ()
    add = _Fast._measure


class FastHistogram(_Fast):
    """A histogram of the SDK, with :meth:`record` taking the shorter path for known attribute sets."""

    __slots__ = ()
    record = _Fast._measure


class Adder(Protocol):
    """What :func:`fast_counter` returns: a counter's ``add``."""

    def add(self, amount: float, attributes: Mapping[str, Any] | None = None) -> None: ...


class Recorder(Protocol):
    """What :func:`fast_histogram` returns: a histogram's ``record``."""

    def record(self, amount: float, attributes: Mapping[str, Any] | None = None) -> None: ...


def _consumer_of(instrument: object) -> bool:
    consumer = getattr(instrument, "_measurement_consumer", None)
    return type(consumer) is SynchronousMeasurementConsumer and available()


def fast_counter(counter: Counter) -> Adder:
    """``counter`` with the shorter path, or ``counter`` itself when it cannot take it.

    Args:
        counter: a counter from any meter provider.

    Returns:
        A :class:`FastCounter` for an SDK counter fed to the SDK's own measurement consumer
        when :func:`available`; else ``counter``.
    """
    return _wrap(counter, SdkCounter, FastCounter, "add")  # type: ignore[no-any-return]


def fast_histogram(histogram: Histogram) -> Recorder:
    """``histogram`` with the shorter path, or ``histogram`` itself when it cannot take it (as
    :func:`fast_counter`)."""
    return _wrap(histogram, SdkHistogram, FastHistogram, "record")  # type: ignore[no-any-return]


def _wrap(instrument: Any, sdk_type: type, fast_type: type[_Fast], method: str) -> Any:
    if isinstance(instrument, sdk_type) and _consumer_of(instrument):
        return fast_type(instrument, getattr(instrument, method))
    return instrument
