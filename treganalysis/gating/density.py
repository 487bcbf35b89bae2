"""One-dimensional densities and the thresholds chosen from them.

The density is a histogram on a fixed grid smoothed by a Gaussian kernel: linear in the number
of events (one pass of ``np.bincount``), unlike a kernel density estimate. Thresholds follow
flowDensity's ideas (Malek et al. 2015): the deepest valley between the two dominant peaks, or,
where a population is only a shoulder of a larger one, the tail of the dominant peak.

Every threshold function returns a :class:`Threshold` of the same shape: the value, the method
that chose it, the method it fell back to when the data did not allow the first, a confidence
in [0, 1], and the numbers behind the decision, so that reports can show why a gate is where it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Density", "Threshold", "binned_density", "find_peaks", "valley_threshold", "tail_threshold",
           "quantile_threshold", "SPREAD_EVENTS"]

# A density's range and bandwidth come from quantiles; beyond this many values they are taken
# from an evenly spaced subsample, whose quantiles differ from the full data's by far less than
# a bin (the binning itself always uses every value).
SPREAD_EVENTS = 1 << 16


@dataclass(frozen=True)
class Density:
    """A smoothed histogram: ``density[i]`` at ``grid[i]`` (bin centres), integrating to 1."""

    grid: np.ndarray
    density: np.ndarray
    bandwidth: float
    n: int


@dataclass(frozen=True)
class Threshold:
    """A threshold and how it was chosen.

    Attributes
    ----------
    value : float
        The cut (in the units of the data it was computed on); NaN when none could be chosen.
    method : str
        ``"valley"``, ``"tail"`` or ``"quantile"``: what chose ``value``.
    fallback : str or None
        The method asked for when another one had to decide (e.g. ``"valley"`` on unimodal data).
    confidence : float
        In [0, 1]: for a valley, ``1 - valley / lower peak``; for a tail, the share of the
        density beyond the cut that the dominant peak does not explain; 0 for a quantile.
    details : dict
        Peaks, valley depth, spread and the other numbers behind the decision.
    """

    value: float
    method: str
    fallback: str | None = None
    confidence: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def binned_density(x: np.ndarray, bins: int = 512, bandwidth: float | None = None,
                   limits: tuple[float, float] | None = None) -> Density:
    """Gaussian-smoothed histogram of ``x`` on ``bins`` equal bins.

    Parameters
    ----------
    x : ndarray
        Values (NaN and infinities are ignored).
    bins : int
        Grid size.
    bandwidth : float, optional
        Kernel standard deviation in data units; by default Silverman's rule with a robust
        spread, ``0.9 * min(sd, IQR / 1.34) * n ** -0.2``, but at least one bin.
    limits : (float, float), optional
        Grid range; by default the 0.1 and 99.9 percentiles widened by 3 bandwidths, so a few
        outliers do not squeeze the populations into a handful of bins.

    Notes
    -----
    The kernel is applied to the binned counts (a Gaussian truncated at 4 standard deviations,
    zero beyond the grid: ``scipy.ndimage.gaussian_filter1d(counts, sigma, mode="constant")``),
    which is the usual binned KDE approximation; its error is negligible for a bin much narrower
    than the bandwidth. With more than :data:`SPREAD_EVENTS` values the quantiles and the
    standard deviation behind the default range and bandwidth come from every k-th value.
    """
    if bins < 8:
        raise ValueError(f"bins must be at least 8, not {bins}")
    x = np.asarray(x).ravel()
    if not np.isfinite(x).all():
        x = x[np.isfinite(x)]
    n = int(x.size)
    if n < 2:
        raise ValueError(f"a density needs at least 2 finite values, not {n}")
    spread_of = np.sort(x[:: -(-n // SPREAD_EVENTS)])  # one sort: cheaper than np.quantile's 4 selections
    lo_q, q25, q75, hi_q = _sorted_quantiles(spread_of, (0.001, 0.25, 0.75, 0.999))
    if bandwidth is None:
        sd = float(np.std(spread_of))
        spread = min(sd, float(q75 - q25) / 1.34) or sd or 1.0
        bandwidth = 0.9 * spread * n ** -0.2
    if limits is None:
        limits = (float(lo_q) - 3 * bandwidth, float(hi_q) + 3 * bandwidth)
    lo, hi = limits
    if not hi > lo:
        hi = lo + 1.0
    width = (hi - lo) / bins
    bandwidth = max(float(bandwidth), width)
    counts = _bin_counts(x, lo, width, bins)
    smooth = _gaussian_smooth(counts, bandwidth / width)
    total = smooth.sum() * width
    grid = lo + (np.arange(bins) + 0.5) * width
    return Density(grid, smooth / total if total > 0 else smooth, float(bandwidth), n)


def _sorted_quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of sorted ``values``, linearly interpolated (``np.quantile``'s default)."""
    last = values.size - 1
    out = []
    for q in qs:
        position = last * q
        below = int(math.floor(position))
        above = min(below + 1, last)
        low, high = float(values[below]), float(values[above])
        out.append(low + (high - low) * (position - below))
    return out


def _bin_counts(x: np.ndarray, lo: float, width: float, bins: int) -> np.ndarray:
    """Counts of the finite ``x`` in ``bins`` bins of ``width`` from ``lo``; values outside are
    not counted."""
    # shifted by one bin and clipped, so that values below and above the grid land in two
    # extra bins that are dropped: no boolean gather of the values in range
    scaled = (x - lo) / width
    np.clip(scaled, -1.0, bins, out=scaled)
    scaled += 1.0
    counts = np.bincount(scaled.astype(np.intp), minlength=bins + 2)
    return counts[1 : bins + 1].astype(np.float64)


def _gaussian_smooth(counts: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``counts`` convolved with a Gaussian of ``sigma`` bins cut at ``truncate`` sigmas, zero
    outside (the same numbers as ``scipy.ndimage.gaussian_filter1d(..., mode="constant")``)."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(counts, kernel)[radius : radius + counts.size]


def find_peaks(density: Density, min_height: float = 0.05) -> np.ndarray:
    """Indices of local maxima at least ``min_height`` x the highest, highest first."""
    d = density.density
    inner = (d[1:-1] > d[:-2]) & (d[1:-1] >= d[2:])
    peaks = np.flatnonzero(inner) + 1
    peaks = peaks[d[peaks] >= min_height * d.max()]
    return peaks[np.argsort(d[peaks])[::-1]]


def valley_threshold(x: np.ndarray, *, bins: int = 512, bandwidth: float | None = None, min_height: float = 0.05,
                     min_depth: float = 0.25, fallback: Literal["tail", "quantile"] = "tail",
                     side: Literal["upper", "lower"] = "upper", k: float = 3.0, q: float = 0.95,
                     pair: Literal["dominant", "leftmost"] = "dominant") -> Threshold:
    """The deepest point of the density between its two dominant peaks.

    Parameters
    ----------
    x : ndarray
        Values of one channel (transformed, e.g. Logicle), for the parent population only.
    bins, bandwidth : see :func:`binned_density`
    min_height : float
        Peaks lower than this fraction of the highest are ignored (noise, outliers).
    min_depth : float
        A second peak counts only if the density between it and the highest peak dips below
        ``1 - min_depth`` of the lower of the two; shallower bumps are noise on one population.
    fallback : {"tail", "quantile"}
        What decides when the density has a single peak: :func:`tail_threshold` on ``side``
        with ``k``, or :func:`quantile_threshold` at ``q``.
    pair : {"dominant", "leftmost"}
        Which two peaks the valley lies between: the highest and its deepest-separated partner,
        or the leftmost peak and the highest peak to its right (debris below cells: the valley
        between lymphocytes and monocytes must not be taken for it).

    Returns
    -------
    Threshold
        ``method="valley"`` with ``details`` holding both peaks and the valley height, or the
        fallback's threshold with ``fallback="valley"``.

    Notes
    -----
    flowDensity's ``deGate`` idea: of the peaks at least ``min_height`` of the highest, take the
    highest and the highest other peak separated from it by a valley at least ``min_depth``
    deep; the threshold is the minimum of the density between them. The confidence
    ``1 - valley / lower peak`` is near 1 for well separated populations and near 0 for a shallow
    dip that noise could have made.
    """
    density = binned_density(x, bins, bandwidth)
    peaks = find_peaks(density, min_height)
    d = density.density
    top = int(peaks[0]) if peaks.size else 0
    partner = None
    candidates = peaks[1:]
    if pair == "leftmost" and peaks.size:
        left = int(peaks.min())
        right = [int(p) for p in peaks if p > left]  # highest first, as find_peaks orders them
        # no peak left of the highest one: nothing below the cells to cut away
        top, candidates = (left, right) if left != int(peaks[0]) else (left, [])
    for other in candidates:
        lo, hi = sorted((top, int(other)))
        if d[lo : hi + 1].min() <= (1.0 - min_depth) * min(d[top], d[other]):
            partner = int(other)
            break
    if partner is None:
        if fallback == "quantile":
            result = quantile_threshold(x, q)
        else:
            result = tail_threshold(x, side=side, k=k, bins=bins, bandwidth=bandwidth, density=density)
        return Threshold(result.value, result.method, "valley", result.confidence,
                         {**result.details, "peaks": density.grid[peaks].tolist()})
    first, second = sorted((top, partner))
    between = density.density[first : second + 1]
    valley = first + int(np.argmin(between))
    lower_peak = float(min(density.density[first], density.density[second]))
    depth = float(density.density[valley])
    return Threshold(
        float(density.grid[valley]), "valley", None, float(np.clip(1.0 - depth / lower_peak, 0.0, 1.0)),
        {"peaks": [float(density.grid[first]), float(density.grid[second])], "valley_density": depth,
         "peak_density": [float(density.density[first]), float(density.density[second])],
         "bandwidth": density.bandwidth},
    )


def tail_threshold(x: np.ndarray, *, side: Literal["upper", "lower"] = "upper", k: float = 3.0, bins: int = 512,
                   bandwidth: float | None = None, density: Density | None = None) -> Threshold:
    """The end of the dominant peak's tail: mode + k x its one-sided spread.

    Parameters
    ----------
    x : ndarray
        Values of one channel for the parent population.
    side : {"upper", "lower"}
        Which tail holds the population of interest (upper: positives are a shoulder above a
        large negative peak, as FOXP3+ above FOXP3- CD4 T cells).
    k : float
        Spreads beyond the mode.

    Notes
    -----
    The dominant peak's spread is measured on its far side only (below the mode for an upper
    tail), where the population of interest does not reach: the root mean square distance of
    those values from the mode, i.e. the sd of the peak mirrored onto itself. The cut is then
    ``mode + k * spread`` (``mode - k * spread`` for a lower tail). The confidence is the share
    of the events beyond the cut that a mirrored dominant peak would not put there.
    """
    x = np.asarray(x).ravel()
    if not np.isfinite(x).all():
        x = x[np.isfinite(x)]
    if density is None:
        density = binned_density(x, bins, bandwidth)
    mode = float(density.grid[int(np.argmax(density.density))])
    sign = 1.0 if side == "upper" else -1.0
    far = x[sign * (x - mode) < 0]
    spread = float(np.sqrt(np.mean((far - mode) ** 2))) if far.size else float(np.std(x))
    value = mode + sign * k * spread
    beyond = int(np.count_nonzero(sign * (x - value) > 0))
    # a mirrored Gaussian peak would leave this share beyond k spreads
    expected = far.size * math.erfc(k / math.sqrt(2.0))  # 2 x the normal upper tail beyond k
    confidence = float(np.clip(1.0 - expected / beyond, 0.0, 1.0)) if beyond else 0.0
    return Threshold(value, "tail", None, confidence,
                     {"mode": mode, "spread": spread, "k": k, "side": side, "beyond": beyond})


def quantile_threshold(x: np.ndarray, q: float) -> Threshold:
    """The ``q`` quantile of ``x``: a last resort that assumes the share it cuts off."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], not {q}")
    x = np.asarray(x).ravel()
    x = x[np.isfinite(x)]
    value = float(np.quantile(x, q)) if x.size else float("nan")
    return Threshold(value, "quantile", None, 0.0, {"q": q})
