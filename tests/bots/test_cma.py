"""The CMA prices the subject from similar sales, follows its size, and reads user CSVs with clear errors."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghl_real_estate_ai.bots.cma import (
    MIN_COMPS,
    SAMPLE_COMPS_PATH,
    Comp,
    CompsDataError,
    CompsSource,
    SubjectProperty,
)
from ghl_real_estate_ai.errors import ConfigurationError


@pytest.fixture(scope="module")
def sample() -> CompsSource:
    return CompsSource.from_csv()


def comp(area: str, beds: int, sqft: int, price: int) -> Comp:
    return Comp(f"{sqft} Test St", area, beds, 2.0, sqft, 1990, price, date(2025, 1, 1))


def test_bundled_data_is_clearly_labelled_sample(sample: CompsSource) -> None:
    first_line = SAMPLE_COMPS_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# SAMPLE DATA") and "NOT real sales" in first_line
    assert 150 <= len(sample) <= 300
    assert all(c.source.startswith("SAMPLE") for c in sample.comps)
    assert sample.areas() == ("Chino Hills", "Claremont", "Fontana", "Ontario", "Rancho Cucamonga", "Upland")


def test_estimate_is_the_median_price_per_sqft_of_similar_sales(sample: CompsSource) -> None:
    result = sample.estimate(SubjectProperty(area="upland", beds=3, sqft=1850))
    assert result is not None
    assert all(c.area == "Upland" and abs(c.beds - 3) <= 1 for c in result.comps)
    assert all(abs(c.sqft - 1850) <= 0.25 * 1850 for c in result.comps)
    assert len(result.comps) >= MIN_COMPS
    assert result.low <= result.estimate <= result.high
    assert (
        result.estimate == round(result.price_per_sqft * 1850, -0)
        or abs(result.estimate - result.price_per_sqft * 1850) < 1850 * 0.01
    )
    assert result.method == "area+beds±1+sqft±25%"


def test_estimate_follows_the_subject_property(sample: CompsSource) -> None:
    small = sample.estimate(SubjectProperty("Fontana", 3, 1400))
    large = sample.estimate(SubjectProperty("Fontana", 4, 2100))
    pricier_area = sample.estimate(SubjectProperty("Claremont", 3, 1400))
    assert small and large and pricier_area
    assert small.estimate < large.estimate
    assert small.estimate < pricier_area.estimate


def test_filter_widens_when_too_few_sales_match() -> None:
    source = CompsSource(
        [comp("Upland", 6, 4000, 1_600_000)]
        + [comp("Upland", 3, 1500 + 10 * i, 600_000 + 4000 * i) for i in range(5)]
    )
    result = source.estimate(SubjectProperty("Upland", 6, 4000))
    assert result is not None
    assert len(result.comps) >= MIN_COMPS
    assert result.method != "area+beds±1+sqft±25%"


def test_no_usable_data_gives_none(sample: CompsSource) -> None:
    assert sample.estimate(SubjectProperty("Pasadena", 3, 1500)) is None
    assert CompsSource([]).estimate(SubjectProperty(None, 3, 1500)) is None


def test_unknown_size_prices_the_typical_recent_sale(sample: CompsSource) -> None:
    result = sample.estimate(SubjectProperty("Ontario", 3, None))
    assert result is not None
    assert "size unknown" in result.method
    prices = sorted(c.sale_price for c in result.comps)
    assert prices[0] <= result.estimate <= prices[-1]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1800, 2200), min_size=3, max_size=12),
    ppsf=st.lists(st.integers(250, 600), min_size=12, max_size=12),
    a=st.integers(1760, 2240),
    b=st.integers(1760, 2240),
)
def test_estimate_strictly_increases_with_sqft_when_comps_are_fixed(
    sizes: list[int], ppsf: list[int], a: int, b: int
) -> None:
    """Every sale matches both subjects (±25 % of 1760-2240 covers 1800-2200), so only size differs."""
    source = CompsSource([comp("Upland", 3, s, s * p) for s, p in zip(sizes, ppsf, strict=False)])
    low, high = sorted((a, b))
    r_low = source.estimate(SubjectProperty("Upland", 3, low))
    r_high = source.estimate(SubjectProperty("Upland", 3, high))
    assert r_low is not None and r_high is not None
    assert set(r_low.comps) == set(r_high.comps)
    if low < high:
        assert r_low.estimate < r_high.estimate
        assert r_low.low <= r_high.low and r_low.high <= r_high.high
    else:
        assert r_low.estimate == r_high.estimate


def test_a_user_csv_replaces_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "mls_export.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Address", "Area", "Beds", "Baths", "SqFt", "Sale_Price", "Sale_Date"])
        writer.writerow(["1 A St", "Eastvale", "3", "2", "1,600", "$640,000", "2025-02-01"])
        writer.writerow(["2 B St", "Eastvale", "3", "2.5", "1700", "680000", "2025-03-01"])
        writer.writerow(["3 C St", "Eastvale", "4", "3", "1800", "720,000", ""])
    source = CompsSource.from_csv(path)
    assert source.areas() == ("Eastvale",)
    result = source.estimate(SubjectProperty("Eastvale", 3, 1700))
    assert result is not None and result.estimate == 680_000
    assert result.comps[0].sale_date == date(2025, 3, 1)


def test_a_csv_without_a_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("address,area,beds,sqft\n1 A St,Upland,3,1500\n", encoding="utf-8")
    with pytest.raises(CompsDataError, match=r"bad\.csv.*'sale_price'") as info:
        CompsSource.from_csv(path)
    assert isinstance(info.value, ConfigurationError)


def test_a_bad_value_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "area,beds,sqft,sale_price\nUpland,3,1500,600000\nUpland,three,1500,600000\n", encoding="utf-8"
    )
    with pytest.raises(CompsDataError, match=r"line 3, column 'beds': bad value 'three'"):
        CompsSource.from_csv(path)


def test_a_missing_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(CompsDataError, match="COMPS_CSV_PATH"):
        CompsSource.from_csv(tmp_path / "nope.csv")
