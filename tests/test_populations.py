"""The population table's numbers: exact medians by buckets, Wilson intervals in closed form."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import binomtest

from treganalysis.gating.populations import _rank, population_medians, wilson_interval


def _expected(columns, masks):
    return {name: [float(np.median(c[m])) if m.any() else float("nan") for c in columns] for name, m in masks.items()}


def _nested_masks(rng, n):
    """A small hierarchy: root > a > b, a > c (overlapping b), root > d (disjoint of a)."""
    root = rng.random(n) < 0.95
    a = root & (rng.random(n) < 0.6)
    b = a & (rng.random(n) < 0.3)
    c = a & (rng.random(n) < 0.5)
    d = root & ~a & (rng.random(n) < 0.5)
    tiny = b & (rng.random(n) < 0.001)
    return {"root": root, "a": a, "b": b, "c": c, "d": d, "tiny": tiny, "empty": np.zeros(n, dtype=bool)}


@pytest.mark.parametrize("n", [0, 1, 2, 3, 50, 1001, 200_000])
def test_medians_equal_numpy_median_exactly(n):
    rng = np.random.default_rng(n)
    columns = [
        (rng.lognormal(5, 2, n) - 300).astype(np.float32),  # both signs, many decades
        rng.normal(0, 1e-3, n).astype(np.float32),  # tiny values around zero
        np.round(rng.normal(100, 5, n)).astype(np.float32),  # many ties
        np.full(n, 7.5, dtype=np.float32),  # one value
    ]
    masks = _nested_masks(rng, n)
    got = population_medians(columns, masks)
    want = _expected(columns, masks)
    for name in masks:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("layout", ["columns", "rows"])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_large_sample_with_few_populations_uses_every_code_and_stays_exact(byteorder, layout, monkeypatch):
    """Above 65,536 x (sets of populations) events the histogram spans all 16-bit codes
    instead of the codes present: the other path, the same medians. Its keys are built in
    16-bit lanes on a little-endian machine and by shift and add otherwise, from contiguous
    channels (a column-major matrix's) or strided ones (a row-major matrix's): all checked."""
    import treganalysis.gating.populations as populations

    monkeypatch.setattr(populations, "sys", SimpleNamespace(byteorder=byteorder))
    rng = np.random.default_rng(7)
    n = 300_000
    events = np.column_stack([(rng.lognormal(4, 1.5, n) - 60), rng.normal(0, 50, n)]).astype(np.float32)
    events = np.asfortranarray(events) if layout == "columns" else np.ascontiguousarray(events)
    columns = [events[:, 0], events[:, 1]]
    outer = rng.random(n) < 0.9
    masks = {"outer": outer, "inner": outer & (rng.random(n) < 0.3)}  # 3 sets: 196,608 < n
    assert population_medians(columns, masks) == _expected(columns, masks)


def test_even_count_median_is_the_float32_mean_of_the_middle_values():
    column = np.array([1.0, 2.0, 4.0, 1e8 + 8], dtype=np.float32)
    got = population_medians([column], {"all": np.ones(4, dtype=bool)})["all"][0]
    assert got == float(np.median(column)) == 3.0


def test_infinities_and_signed_zero_order_like_values():
    column = np.array([-np.inf, -0.0, 0.0, 1e-30, -1e-30, np.inf, 3.0], dtype=np.float32)
    buckets = _rank(column.view(np.uint32) >> 16)
    order = np.argsort(column, kind="stable")
    assert np.all(np.diff(buckets[order]) >= 0)  # buckets sort as the values do
    masks = {"all": np.ones(7, dtype=bool), "some": np.array([1, 0, 1, 1, 0, 1, 0], dtype=bool)}
    assert population_medians([column], masks) == _expected([column], masks)


def test_nan_in_a_column_gives_what_numpy_median_gives():
    column = np.array([1.0, np.nan, 3.0, 4.0], dtype=np.float32)
    masks = {"with_nan": np.array([1, 1, 1, 0], dtype=bool), "without": np.array([1, 0, 1, 1], dtype=bool)}
    got = population_medians([column], masks)
    assert np.isnan(got["with_nan"][0])
    assert got["without"][0] == 3.0


@pytest.mark.parametrize("n", [2000, 300_000])  # codes present / every 16-bit code
@pytest.mark.parametrize("bits", [0x7FC00000, 0xFF800001, 0x7F800001])  # the last two share +-inf's top 16 bits
def test_nan_is_found_on_either_histogram_path_beside_infinities(n, bits):
    """A NaN is only looked for in a column whose codes include an all-ones exponent; a NaN
    whose high bits are those of an infinity must still be found, and infinities alone keep
    the bucket path's medians."""
    rng = np.random.default_rng(11)
    finite = rng.normal(100, 30, n).astype(np.float32)
    with_inf = finite.copy()
    with_inf[[3, 10, 20]] = [np.inf, -np.inf, np.inf]
    with_nan = with_inf.copy()
    with_nan[n // 2] = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    assert np.isnan(with_nan[n // 2])
    outer = rng.random(n) < 0.9
    outer[[3, 10, 20, n // 2]] = True
    masks = {"outer": outer, "inner": outer & (rng.random(n) < 0.3), "rest": ~outer}
    masks["inner"][n // 2] = False
    columns = [finite, with_inf, with_nan]
    got = population_medians(columns, masks)
    want = _expected(columns, masks)
    for name in masks:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert np.isnan(got["outer"][2]) and not np.isnan(got["inner"][2])


def test_float64_columns_and_many_populations_take_the_plain_path():
    rng = np.random.default_rng(3)
    n = 5000
    column64 = rng.normal(size=n)
    many = {f"p{i}": rng.random(n) < 0.5 for i in range(25)}
    got = population_medians([column64, column64.astype(np.float32)], many)
    assert got == _expected([column64, column64.astype(np.float32)], many)


def test_overlapping_masks_that_are_no_hierarchy_take_the_plain_path():
    rng = np.random.default_rng(4)
    n = 20_000
    column = rng.normal(size=n).astype(np.float32)
    masks = {f"p{i}": rng.random(n) < 0.5 for i in range(12)}  # ~4,000 distinct sets of them
    assert population_medians([column], masks) == _expected([column], masks)


def test_no_columns_or_no_populations():
    assert population_medians([], {"a": np.ones(3, dtype=bool)}) == {"a": []}
    assert population_medians([np.ones(3, dtype=np.float32)], {}) == {}


@pytest.mark.parametrize("n", [1, 2, 7, 100, 12_345, 1_000_000])
def test_wilson_interval_equals_scipy(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-15)


@pytest.mark.parametrize("k, n", [(-1, 5), (6, 5), (0, 0)])
def test_wilson_interval_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(k, n)
