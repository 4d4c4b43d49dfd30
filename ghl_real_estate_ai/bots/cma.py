"""Comparative market analysis (CMA) from a comparable-sales CSV.

A :class:`CompsSource` holds recorded sales; :meth:`CompsSource.estimate` picks
the sales most like the subject property (same area, beds within one, size
within 25 %), widening the filter step by step when fewer than
:data:`MIN_COMPS` match, and prices the subject at the median price per square
foot of those comps. The low/high range is the interquartile spread of the
comps' price per square foot applied to the same size, so a tight market gives
a tight range.

The bundled ``data/sample_comps.csv`` is SYNTHETIC sample data (its ``source``
column and header comment say so), good for demos and tests only. Point
``COMPS_CSV_PATH`` at your MLS export to price real homes::

    source = CompsSource.from_csv(settings.comps_csv_path)  # None -> bundled sample
    result = source.estimate(SubjectProperty(area="Upland", beds=3, sqft=1850))
    if result is not None:
        print(result.estimate, result.low, result.high, len(result.comps))

The CSV needs the columns ``area``, ``beds``, ``sqft`` and ``sale_price``
(header names are case-insensitive); ``address``, ``baths``, ``year_built``,
``sale_date`` and ``source`` are read when present. Lines starting with ``#``
are comments. Money may be written ``$612,000``.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ghl_real_estate_ai.errors import ConfigurationError

__all__ = [
    "MIN_COMPS",
    "SAMPLE_COMPS_PATH",
    "CMAResult",
    "Comp",
    "CompsDataError",
    "CompsSource",
    "SubjectProperty",
]

SAMPLE_COMPS_PATH = Path(__file__).resolve().parent.parent / "data" / "sample_comps.csv"
"""The bundled SAMPLE comps (synthetic, not real sales), shipped as package data."""

MIN_COMPS = 3
"""Fewest comparable sales an estimate is based on before the filter widens."""

MAX_COMPS = 12
"""At most this many sales are used: the closest in size (the most recent when the size is unknown)."""

REQUIRED_COLUMNS = ("area", "beds", "sqft", "sale_price")
OPTIONAL_COLUMNS = ("address", "baths", "year_built", "sale_date", "source")


class CompsDataError(ConfigurationError):
    """A comps CSV is missing, unreadable or has a bad column or value."""


@dataclass(frozen=True, slots=True)
class Comp:
    """One recorded sale."""

    address: str
    area: str
    beds: int
    baths: float | None
    sqft: int
    year_built: int | None
    sale_price: int
    sale_date: date | None
    source: str = ""

    @property
    def price_per_sqft(self) -> float:
        """Sale price divided by living area."""
        return self.sale_price / self.sqft


@dataclass(frozen=True, slots=True)
class SubjectProperty:
    """The home being priced; unknown parts are ``None`` and simply not filtered on."""

    area: str | None
    beds: int | None
    sqft: int | None
    baths: float | None = None


@dataclass(frozen=True, slots=True)
class CMAResult:
    """An estimate with its range and the sales it rests on.

    Attributes:
        estimate: dollars, median price per square foot times the subject's size
            (the median sale price when the size is unknown).
        low: dollars, the 25th percentile of the comps' price per square foot, applied likewise.
        high: dollars, the 75th percentile, applied likewise.
        price_per_sqft: the median price per square foot of the comps.
        comps: the sales used, closest in size first (most recent first when the size is unknown).
        method: how the comps were chosen, e.g. ``"area+beds±1+sqft±25%"``.
    """

    estimate: int
    low: int
    high: int
    price_per_sqft: float
    comps: tuple[Comp, ...]
    method: str


@dataclass(frozen=True, slots=True)
class _Step:
    label: str
    beds_within: int | None
    sqft_within: float | None


# Each step relaxes one constraint; the first that finds MIN_COMPS sales wins.
_STEPS = (
    _Step("beds±1+sqft±25%", 1, 0.25),
    _Step("beds±1+sqft±40%", 1, 0.40),
    _Step("any beds+sqft±40%", None, 0.40),
    _Step("beds±1", 1, None),
    _Step("all sales", None, None),
)


class CompsSource:
    """Comparable sales, loaded once, queried many times (read-only, safe to share)."""

    def __init__(self, comps: Iterable[Comp], *, name: str = "comps") -> None:
        """Build a source from sales already in memory.

        Args:
            comps: the recorded sales.
            name: where they came from, shown in messages.
        """
        self._comps = tuple(comps)
        self.name = name
        self._areas: dict[str, str] = {}
        for comp in self._comps:
            self._areas.setdefault(comp.area.casefold(), comp.area)

    @classmethod
    def from_csv(cls, path: Path | None = None) -> CompsSource:
        """Load sales from a CSV file.

        Args:
            path: the CSV; ``None`` loads the bundled SAMPLE data.

        Returns:
            The source.

        Raises:
            CompsDataError: the file cannot be read, a required column is missing or
                a value is malformed; the message names the file, line and column.
        """
        if path is None:
            text = SAMPLE_COMPS_PATH.read_text(encoding="utf-8")
            return cls(_parse(text.splitlines(), "bundled sample_comps.csv"), name="sample_comps.csv")
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CompsDataError(
                f"cannot read comps CSV {str(path)!r}: {exc.strerror or exc}; "
                "fix COMPS_CSV_PATH or unset it to use the bundled sample"
            ) from None
        except UnicodeDecodeError:
            raise CompsDataError(
                f"comps CSV {str(path)!r} is not UTF-8 text: export it as UTF-8 CSV"
            ) from None
        return cls(_parse(text.splitlines(), str(path)), name=Path(path).name)

    def __len__(self) -> int:
        return len(self._comps)

    @property
    def comps(self) -> tuple[Comp, ...]:
        """Every sale in the source."""
        return self._comps

    def areas(self) -> tuple[str, ...]:
        """The areas that have sales, as spelled in the data, sorted."""
        return tuple(sorted(self._areas.values()))

    def canonical_area(self, area: str) -> str | None:
        """The data's spelling of ``area`` (case-insensitive), or ``None`` when it has no sales."""
        return self._areas.get(" ".join(area.split()).casefold())

    def estimate(self, subject: SubjectProperty) -> CMAResult | None:
        """Price ``subject`` from the most similar sales.

        Args:
            subject: the home; a ``None`` field is not filtered on.

        Returns:
            The estimate, or ``None`` when no sale is usable: an empty source, or an
            area the data has no sales in.
        """
        pool: Sequence[Comp] = self._comps
        area_label = "all areas"
        if subject.area is not None:
            canonical = self.canonical_area(subject.area)
            if canonical is None:
                return None
            pool = [c for c in pool if c.area == canonical]
            area_label = "area"
        if not pool:
            return None

        chosen: list[Comp] = []
        label = ""
        for step in _STEPS:
            chosen = [c for c in pool if _matches(c, subject, step)]
            label = step.label
            if len(chosen) >= MIN_COMPS:
                break
        if not chosen:
            return None
        if subject.sqft is not None:
            target = subject.sqft
            chosen.sort(key=lambda c: (abs(c.sqft - target), c.sale_price))
        else:
            # Size unknown: the most recent sales say most about today's market.
            chosen.sort(key=lambda c: (c.sale_date or date.min, c.sale_price), reverse=True)
        used = tuple(chosen[:MAX_COMPS])
        return _price(subject, used, f"{area_label}+{label}")


def _matches(comp: Comp, subject: SubjectProperty, step: _Step) -> bool:
    beds_ok = (
        step.beds_within is None or subject.beds is None or abs(comp.beds - subject.beds) <= step.beds_within
    )
    sqft_ok = (
        step.sqft_within is None
        or subject.sqft is None
        or abs(comp.sqft - subject.sqft) <= step.sqft_within * subject.sqft
    )
    return beds_ok and sqft_ok


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _price(subject: SubjectProperty, comps: tuple[Comp, ...], method: str) -> CMAResult:
    ppsf = sorted(c.price_per_sqft for c in comps)
    q1, median, q3 = _quartiles(ppsf)
    if subject.sqft is not None:
        size = subject.sqft
        return CMAResult(
            estimate=round(median * size),
            low=round(q1 * size),
            high=round(q3 * size),
            price_per_sqft=round(median, 2),
            comps=comps,
            method=method,
        )
    # No size given: price the typical home among the comps instead.
    prices = sorted(float(c.sale_price) for c in comps)
    p1, p2, p3 = _quartiles(prices)
    return CMAResult(
        estimate=round(p2),
        low=round(p1),
        high=round(p3),
        price_per_sqft=round(median, 2),
        comps=comps,
        method=method + " (median sale price: size unknown)",
    )


def _money(raw: str) -> float:
    return float(raw.replace("$", "").replace(",", "").strip())


def _parse(lines: Iterable[str], name: str) -> list[Comp]:
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if not line.lstrip().startswith("#")]
    numbered = [(n, line) for n, line in numbered if line.strip()]
    if not numbered:
        raise CompsDataError(f"comps CSV {name!r} has no header row: add one naming {REQUIRED_COLUMNS}")
    reader = csv.reader(line for _, line in numbered)
    header = [h.strip().casefold() for h in next(reader)]
    missing = [col for col in REQUIRED_COLUMNS if col not in header]
    if missing:
        raise CompsDataError(
            f"comps CSV {name!r} has no column {missing[0]!r} (columns found: {header!r}); "
            f"it needs {', '.join(REQUIRED_COLUMNS)}"
        )
    index = {col: header.index(col) for col in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if col in header}
    comps: list[Comp] = []
    for (line_no, _), row in zip(numbered[1:], reader, strict=False):
        if not any(cell.strip() for cell in row):
            continue
        comps.append(_row(row, index, name, line_no))
    return comps


def _row(row: list[str], index: dict[str, int], name: str, line_no: int) -> Comp:
    def cell(col: str) -> str:
        pos = index.get(col)
        return row[pos].strip() if pos is not None and pos < len(row) else ""

    def bad(col: str, hint: str) -> CompsDataError:
        return CompsDataError(
            f"comps CSV {name!r} line {line_no}, column {col!r}: bad value {cell(col)!r} ({hint})"
        )

    area = " ".join(cell("area").split())
    if not area:
        raise bad("area", "an area name is required")
    try:
        beds = int(_money(cell("beds")))
    except ValueError:
        raise bad("beds", "expected a whole number such as 3") from None
    try:
        sqft = int(_money(cell("sqft")))
    except ValueError:
        raise bad("sqft", "expected square feet such as 1850") from None
    try:
        price = int(_money(cell("sale_price")))
    except ValueError:
        raise bad("sale_price", "expected dollars such as 612000 or $612,000") from None
    if beds < 0:
        raise bad("beds", "must not be negative")
    if sqft <= 0:
        raise bad("sqft", "must be positive")
    if price <= 0:
        raise bad("sale_price", "must be positive")

    baths: float | None = None
    if cell("baths"):
        try:
            baths = float(cell("baths"))
        except ValueError:
            raise bad("baths", "expected a number such as 2.5") from None
    year: int | None = None
    if cell("year_built"):
        try:
            year = int(cell("year_built"))
        except ValueError:
            raise bad("year_built", "expected a year such as 1998") from None
    sold: date | None = None
    if cell("sale_date"):
        try:
            sold = date.fromisoformat(cell("sale_date"))
        except ValueError:
            raise bad("sale_date", "expected YYYY-MM-DD") from None
    return Comp(
        address=cell("address"),
        area=area,
        beds=beds,
        baths=baths,
        sqft=sqft,
        year_built=year,
        sale_price=price,
        sale_date=sold,
        source=cell("source"),
    )
