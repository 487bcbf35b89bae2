"""Densities and thresholds: valleys between populations, tails of a dominant peak."""

from __future__ import annotations

import numpy as np
import pytest

from treganalysis.gating.density import (
    binned_density,
    find_peaks,
    quantile_threshold,
    tail_threshold,
    valley_threshold,
)


def _mixture(seed: int, n: int, parts: list[tuple[float, float, float]]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [w for w, _, _ in parts])
    return np.concatenate([rng.normal(m, s, c) for c, (_, m, s) in zip(counts, parts)]).astype(np.float32)


def test_density_integrates_to_one_and_finds_both_modes():
    x = _mixture(0, 50_000, [(0.7, 0.2, 0.05), (0.3, 0.6, 0.05)])
    d = binned_density(x)
    assert np.sum(d.density) * (d.grid[1] - d.grid[0]) == pytest.approx(1.0, rel=1e-6)
    peaks = d.grid[find_peaks(d)]
    assert len(peaks) == 2
    assert peaks[0] == pytest.approx(0.2, abs=0.01) and peaks[1] == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize("seed", range(5))
def test_valley_between_two_populations(seed):
    # equal spreads and weights 70/30: the density minimum lies a little toward the smaller peak
    x = _mixture(seed, 40_000, [(0.7, 0.2, 0.05), (0.3, 0.6, 0.05)])
    t = valley_threshold(x)
    assert t.method == "valley" and t.fallback is None
    assert 0.38 < t.value < 0.46
    assert t.confidence > 0.95
    assert t.details["peaks"][0] == pytest.approx(0.2, abs=0.01)


def test_shallow_dip_is_not_a_valley():
    # two heavily overlapping halves of one population: no real valley, the tail decides
    x = _mixture(1, 40_000, [(0.5, 0.20, 0.05), (0.5, 0.26, 0.05)])
    t = valley_threshold(x)
    assert t.fallback == "valley" and t.method == "tail"


def test_unimodal_falls_back_to_tail_or_quantile():
    x = _mixture(2, 20_000, [(1.0, 0.0, 1.0)])
    t = valley_threshold(x, k=3.0)
    assert (t.method, t.fallback) == ("tail", "valley")
    assert t.value == pytest.approx(3.0, abs=0.15)
    q = valley_threshold(x, fallback="quantile", q=0.9)
    assert (q.method, q.fallback) == ("quantile", "valley")
    assert q.value == pytest.approx(np.quantile(x, 0.9))


def test_tail_of_a_dominant_peak_with_a_shoulder():
    # 95% negatives N(0.2, 0.05), 5% positives around 0.5: a shoulder, not a peak
    x = _mixture(3, 100_000, [(0.95, 0.2, 0.05), (0.05, 0.5, 0.06)])
    t = tail_threshold(x, k=3.0)
    assert t.method == "tail"
    assert t.details["mode"] == pytest.approx(0.2, abs=0.01)
    assert t.details["spread"] == pytest.approx(0.05, rel=0.1)
    assert t.value == pytest.approx(0.35, abs=0.02)
    assert t.confidence > 0.9  # nearly everything beyond the cut is the shoulder


def test_lower_tail():
    x = _mixture(4, 50_000, [(0.9, 0.5, 0.05), (0.1, 0.2, 0.03)])
    t = tail_threshold(x, side="lower", k=3.0)
    assert t.value == pytest.approx(0.35, abs=0.02)


def test_no_tail_beyond_a_lone_gaussian_has_low_confidence():
    x = _mixture(5, 50_000, [(1.0, 0.0, 1.0)])
    assert tail_threshold(x, k=3.0).confidence < 0.3


def test_quantile_and_input_checks():
    x = np.arange(101, dtype=np.float32)
    assert quantile_threshold(x, 0.5).value == 50
    with pytest.raises(ValueError, match="q must be"):
        quantile_threshold(x, 1.5)
    with pytest.raises(ValueError, match="at least 2 finite"):
        binned_density(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="bins"):
        binned_density(x, bins=4)


def test_nan_and_inf_are_ignored():
    x = _mixture(6, 20_000, [(0.7, 0.2, 0.05), (0.3, 0.6, 0.05)])
    dirty = np.concatenate([x, [np.nan, np.inf, -np.inf]]).astype(np.float32)
    assert valley_threshold(dirty).value == pytest.approx(valley_threshold(x).value, abs=1e-3)
