"""Acquisition quality control before gating: margins, time, event counts, compensation.

Each check is a function on numpy arrays that returns a keep-mask (or figures) and a record;
:func:`qc_sample` runs them in the consensus order of PeacoQC and flowAI (margins, then
compensation and a transform, then time) and gives the sample a status ``pass | warn | fail``
with its reasons. Every threshold is a configurable default (``DEFAULTS``, the ``qc:`` section
of ``config.yaml``); the values come from those tools (domain.md 4.1, 5.1) and are not confirmed
for this assay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import TregAnalysisError
from .sample import Sample

__all__ = ["DEFAULTS", "QCResult", "margin_events", "negative_populations", "qc_sample", "time_qc"]

DEFAULTS: dict[str, Any] = {
    "time": True,  # time-based QC (needs a time channel)
    "bin_events": 500,  # mean events per time bin (domain.md: 500-2,000)
    "max_bins": 500,  # PeacoQC's max_bins
    "mad": 6.0,  # a bin deviates when beyond this many robust deviations (PeacoQC MAD = 6)
    "consecutive_bins": 5,  # ... in at least this many consecutive bins (PeacoQC)
    "min_rate_change": 0.2,  # and the event rate differs by at least this share
    "min_shift": 0.1,  # or a population's signal by at least this (arcsinh units, about 10%)
    "cofactor": 150.0,  # arcsinh cofactor of the QC scale (domain.md 4.3)
    "warn_removed": 0.20,  # share of events removed by QC that warns (domain.md 5.1)
    "fail_removed": 0.30,  # ... and fails (flowCut MaxPercCut)
    "warn_margins": 0.01,  # share of events at a channel's ceiling that warns
    "warn_events": 20000,  # fewer events kept: about 200 Treg events, a Treg % CV near 7%
    "fail_events": 2000,
    "negative_sd": 6.0,  # a compensated event below -negative_sd x the negatives' spread ...
    "negative_share": 0.01,  # ... in more than this share of events: an over-compensated population
}


class QCError(TregAnalysisError):
    """A QC setting that cannot be used."""


@dataclass
class QCResult:
    """What acquisition QC kept, and why.

    Attributes
    ----------
    keep : ndarray of bool
        Events that go on to gating (file order).
    status : str
        ``pass``, ``warn`` or ``fail``.
    reasons : list of str
        Why the status is not ``pass`` (empty when it is).
    record : dict
        Every check's figures (JSON-ready): ``margins``, ``time`` (per-bin rate and signals,
        flagged and removed bins), ``compensation``, ``events``, ``settings``.
    """

    keep: np.ndarray
    status: str
    reasons: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def margin_events(sample: Sample, channels: Iterable[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Events below every channel's ceiling, and the count at the ceiling per channel.

    Parameters
    ----------
    sample : Sample
        Raw (uncompensated) events: saturation happens in the detector.
    channels : iterable of str
        ``$PnN`` names to check (scatter and the gating channels).

    Returns
    -------
    keep : ndarray of bool
    removed : dict
        Channel -> events at or above ``$PnR - 1`` (PeacoQC's RemoveMargins). Channels
        without a usable ``$PnR`` are not checked.
    """
    keep = np.ones(sample.n_events, dtype=bool)
    removed = {}
    for name in sorted(set(channels)):
        j = sample.index(name)
        top = sample.ranges[j] if sample.ranges else 0
        if top > 0:
            hit = sample.events[:, j] >= top - 1
            removed[name] = int(hit.sum())
            keep &= ~hit
    return keep, removed


def time_qc(time: np.ndarray, signals: Mapping[str, np.ndarray], keep: np.ndarray | None = None, *,
            bin_events: int = 500, max_bins: int = 500, mad: float = 6.0, consecutive_bins: int = 5,
            min_rate_change: float = 0.2, min_shift: float = 0.1) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove stretches of the acquisition where the event rate or a signal departs.

    Parameters
    ----------
    time : ndarray
        Acquisition time of each event (seconds, or the instrument's ticks), file order.
    signals : mapping of str to ndarray
        Channel -> events on a log-like scale (e.g. arcsinh of compensated values).
    keep : ndarray of bool, optional
        Events the signals are judged on (e.g. not at a margin); the rate counts every event.
    bin_events, max_bins : int
        Time bins of equal width, about ``bin_events`` events each on average, at most
        ``max_bins`` and at least 10.
    mad : float
        A bin deviates when the running mean over 5 bins of its rate or of a population's mean
        signal is more than ``mad`` robust deviations of that running mean from the median bin
        (the bin-to-bin noise from 1.4826 MAD of successive differences / sqrt(2), which a slow
        drift barely moves) ...
    consecutive_bins : int
        ... in a run of at least this many consecutive bins; runs closer than this are joined.
    min_rate_change, min_shift : float
        ... and by at least this relative rate change, or this signal shift (signal units).

    Returns
    -------
    keep : ndarray of bool
        False for the events of removed bins.
    record : dict
        ``edges`` (bin edges), ``rate`` (events per time unit), ``signals`` (per channel and
        population, the per-bin means), ``flagged`` and ``removed`` bins, ``reasons`` per
        removed run, ``removed_events``.

    Notes
    -----
    In the spirit of PeacoQC and flowAI. Each channel's events are split into populations at
    the valleys of its overall density (:func:`treganalysis.gating.density.find_peaks`), and
    each population's mean is followed bin by bin, so that a drifting bright population is seen
    even when most events are negative. A clog shows as a run of low-rate bins followed by a
    burst; a drift as a run of shifted means at the end. Sums per bin and population come from
    one ``np.bincount`` each.
    """
    time = np.asarray(time, dtype=np.float64)
    n = time.size
    keep = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    finite = np.isfinite(time)
    lo = float(np.min(time[finite])) if finite.any() else 0.0
    hi = float(np.max(time[finite])) if finite.any() else 0.0
    time = np.where(finite, time, lo)  # an event without a time is counted in no bin
    n_bins = int(np.clip(n // max(int(bin_events), 1), 10, max(int(max_bins), 10)))
    record: dict[str, Any] = {"bins": n_bins, "signals": {}, "removed_runs": []}
    if n < 10 * 20 or hi <= lo:
        record.update(skipped="too few events or no time span for time QC", removed_events=0)
        return np.ones(n, dtype=bool), record
    edges = np.linspace(lo, hi, n_bins + 1)
    b = np.minimum(((time - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(b, weights=finite.astype(np.float64), minlength=n_bins)
    rate = counts / np.diff(edges)
    bad = _deviating(counts, mad, min_rate_change * np.median(counts))
    reasons = {i: "event rate" for i in np.flatnonzero(bad)}
    kb = b[keep]
    for channel, values in signals.items():
        x = np.asarray(values)[keep].astype(np.float64)
        cuts = _population_cuts(x)
        population = np.searchsorted(cuts, x)
        key = kb * (len(cuts) + 1) + population
        size = n_bins * (len(cuts) + 1)
        n_in = np.bincount(key, minlength=size).reshape(n_bins, -1)
        sums = np.bincount(key, weights=x, minlength=size).reshape(n_bins, -1)
        means = np.divide(sums, n_in, out=np.full(sums.shape, np.nan), where=n_in > 0)
        record["signals"][channel] = {"cuts": cuts.tolist(), "means": _json_numbers(means.T, 4)}
        for p in range(means.shape[1]):
            # populations too small to follow (a few events per bin) would only add noise
            if np.median(n_in[:, p]) < 20:
                continue
            flagged = _deviating(means[:, p], mad, min_shift)
            for i in np.flatnonzero(flagged & ~bad):
                reasons[i] = f"{channel} signal"
            bad |= flagged
    removed = _runs(bad, int(consecutive_bins))
    keep_time = ~removed[b]
    for start, stop in _run_bounds(removed):
        why = sorted({reasons[i] for i in range(start, stop) if i in reasons})
        record["removed_runs"].append({"first_bin": start, "last_bin": stop - 1, "start": float(edges[start]),
                                       "stop": float(edges[stop]), "why": why})
    record.update(edges=_json_numbers(edges, 6), rate=_json_numbers(rate, 4), flagged=np.flatnonzero(bad).tolist(),
                  removed=np.flatnonzero(removed).tolist(), removed_events=int(n - keep_time.sum()))
    return keep_time, record


def _json_numbers(values: np.ndarray, digits: int) -> list:
    """Rounded to ``digits`` significant digits, NaN as None (valid JSON, a small gates.json)."""
    values = np.asarray(values, dtype=np.float64)
    rounded = np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(values) if values.size else values
    return np.where(np.isfinite(values), rounded, None).tolist()


def _deviating(values: np.ndarray, mad: float, min_change: float, window: int = 5) -> np.ndarray:
    """Bins whose running mean (over ``window`` bins) is more than ``mad`` robust deviations of
    that mean, and ``min_change``, from the median bin.

    The bin-to-bin noise comes from the MAD of successive differences, which a slow drift or a
    step barely moves (the MAD of the values themselves grows with the drift it should find).
    """
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return np.zeros(values.size, dtype=bool)
    center = np.median(values[ok])
    filled = np.where(ok, values, center)
    noise = 1.4826 * np.median(np.abs(np.diff(filled[ok]))) / np.sqrt(2.0)
    window = max(1, min(int(window), values.size))
    smooth = np.convolve(filled, np.ones(window) / window, mode="same")
    # the ends average fewer real bins: rescale so an edge bin is not pulled towards zero
    support = np.convolve(np.ones(values.size), np.ones(window) / window, mode="same")
    smooth = smooth / support
    distance = np.abs(smooth - center)
    return (distance > mad * noise / np.sqrt(window)) & (distance >= min_change) & ok


def _population_cuts(x: np.ndarray) -> np.ndarray:
    """Valleys between the peaks of a channel's density: where its populations part."""
    from .gating.density import binned_density, find_peaks

    if x.size < 100:
        return np.empty(0)
    density = binned_density(x, bins=256)
    peaks = np.sort(find_peaks(density, min_height=0.1))  # indices into the grid
    cuts = [float(density.grid[left + np.argmin(density.density[left : right + 1])])
            for left, right in zip(peaks[:-1], peaks[1:])]
    return np.asarray(cuts)


def _runs(flags: np.ndarray, length: int) -> np.ndarray:
    """Runs of at least ``length`` flagged bins, after joining runs closer than ``length``."""
    filled = flags.copy()
    idx = np.flatnonzero(flags)
    if idx.size:
        gaps = np.flatnonzero((np.diff(idx) > 1) & (np.diff(idx) <= length))
        for g in gaps:  # one iteration per gap between flagged runs (a few), not per event
            filled[idx[g] : idx[g + 1]] = True
    out = np.zeros_like(filled)
    for start, stop in _run_bounds(filled):
        if stop - start >= length:
            out[start:stop] = True
    return out


def _run_bounds(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[::2].tolist(), change[1::2].tolist()))


def negative_populations(compensated: Sample, channels: Iterable[str], keep: np.ndarray | None = None,
                         negative_sd: float = 6.0) -> dict[str, dict[str, float]]:
    """Share of events far below zero in each compensated channel: over-compensation.

    Parameters
    ----------
    compensated : Sample
    channels : iterable of str
        Fluorescence channels to check.
    keep : ndarray of bool, optional
    negative_sd : float
        An event is strongly negative below ``-negative_sd`` times the spread of the negative
        population around zero.

    Returns
    -------
    dict
        Channel -> ``{"spread": ..., "limit": ..., "share": ...}``.

    Notes
    -----
    A correct matrix leaves each population centred where its true signal is, so an unstained
    population spreads symmetrically around zero. The spread is estimated from the 10% quantile
    of ``|x|`` among negative events (a half-normal's is 0.1257 sigma), which stays within the
    unstained population while an over-compensated one holds fewer than nine tenths of the
    negative events (a higher quantile is pulled out by the very population it should find).
    """
    out = {}
    for channel in channels:
        x = compensated.column(channel)
        if keep is not None:
            x = x[keep]
        negative = x[x < 0]
        if negative.size < 100:
            continue
        spread = float(np.quantile(-negative, 0.10)) / 0.1257
        limit = -negative_sd * spread
        out[channel] = {"spread": spread, "limit": limit, "share": float(np.mean(x < limit))}
    return out


def qc_sample(sample: Sample, compensated: Sample, channels: Iterable[str],
              config: Mapping[str, Any] | None = None, signals: Iterable[str] | None = None) -> QCResult:
    """Acquisition QC of one sample: margins, time, event counts and compensation.

    Parameters
    ----------
    sample : Sample
        The raw sample (margins are judged on the detector's values).
    compensated : Sample
        The same events compensated (signals and over-compensation are judged there).
    channels : iterable of str
        The channels gating uses (scatter and fluorescence); margins are checked on these and
        FSC-A/FSC-H/SSC-A, time signals and compensation on the fluorescence ones.
    config : mapping, optional
        Overrides of :data:`DEFAULTS` (the ``qc:`` section of ``config.yaml``).
    signals : iterable of str, optional
        Fluorescence channels whose signal time QC follows and whose compensation is checked
        (default: the fluorescence ones of ``channels``); e.g. every channel that is reported.

    Returns
    -------
    QCResult
    """
    settings = dict(DEFAULTS)
    unknown = sorted(set(config or {}) - set(DEFAULTS))
    if unknown:
        raise QCError(f"qc: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    settings.update(config or {})
    channels = sorted(set(channels))
    scatter = [c for c in sample.scatter_channels if c.upper() in ("FSC-A", "FSC-H", "SSC-A")]
    fluorescence = sorted(set(channels if signals is None else signals) & set(compensated.fluorescence_channels))
    keep, margins = margin_events(sample, set(channels) | set(scatter))
    reasons: list[str] = []
    n = sample.n_events
    # NaN/Inf events (a broken acquisition, a mislabelled byte order) take no part in anything
    finite = np.isfinite(sample.events).all(axis=1)
    nonfinite = int(n - finite.sum())
    keep &= finite
    if nonfinite:
        reasons.append(f"{nonfinite} events with NaN or infinite values removed")
    if n == 0:
        return QCResult(keep, "fail", ["the file holds no events"],
                        {"settings": settings, "events": {"total": 0, "kept": 0, "removed": 0, "removed_share": 0.0},
                         "margins": {"removed": margins, "removed_events": 0}, "time": {"skipped": "no events"},
                         "compensation": {}})
    record: dict[str, Any] = {"settings": settings, "events": {"total": n}}
    record["margins"] = {"removed": margins, "removed_events": int(n - keep.sum()) - nonfinite}
    record["events"]["nonfinite"] = nonfinite
    time_channel = sample.time_channel
    if settings["time"] and time_channel is not None and n:
        cofactor = float(settings["cofactor"])
        signals = {c: np.arcsinh(compensated.column(c) / cofactor) for c in fluorescence}
        keep_time, time_record = time_qc(
            sample.column(time_channel), signals, keep, bin_events=int(settings["bin_events"]),
            max_bins=int(settings["max_bins"]), mad=float(settings["mad"]),
            consecutive_bins=int(settings["consecutive_bins"]),
            min_rate_change=float(settings["min_rate_change"]), min_shift=float(settings["min_shift"]))
        time_record["channel"] = time_channel
        time_record["unit"] = "s" if sample.metadata.get("$TIMESTEP", "").strip() else "ticks"
        removed_by_time = int((keep & ~keep_time).sum())
        time_record["removed_after_margins"] = removed_by_time
        keep &= keep_time
        for run in time_record["removed_runs"]:
            reasons.append(f"time QC removed {run['last_bin'] - run['first_bin'] + 1} bins "
                           f"({run['start']:.4g}-{run['stop']:.4g} {time_record['unit']}): {', '.join(run['why'])}")
    else:
        why = "time QC off in the configuration" if not settings["time"] else "no time channel"
        time_record = {"skipped": why}
        if settings["time"]:
            reasons.append(f"{why}: clogs and drifts cannot be found")
    record["time"] = time_record
    kept = int(keep.sum())
    removed_share = 1.0 - kept / n if n else 1.0
    record["events"].update(kept=kept, removed=n - kept, removed_share=removed_share)
    status = "warn" if reasons else "pass"
    if n and record["margins"]["removed_events"] / n > settings["warn_margins"]:
        status = "warn"
        reasons.append(f"{100 * record['margins']['removed_events'] / n:.1f}% of events at a channel's ceiling "
                       f"({', '.join(c for c, k in margins.items() if k)})")
    if removed_share > settings["fail_removed"]:
        status = "fail"
        reasons.append(f"QC removed {100 * removed_share:.1f}% of events (fail above "
                       f"{100 * settings['fail_removed']:.0f}%)")
    elif removed_share > settings["warn_removed"]:
        status = "warn"
        reasons.append(f"QC removed {100 * removed_share:.1f}% of events (warn above "
                       f"{100 * settings['warn_removed']:.0f}%)")
    if kept < settings["fail_events"]:
        status = "fail"
        reasons.append(f"{kept} events left after QC (fail below {settings['fail_events']})")
    elif kept < settings["warn_events"]:
        status = "warn" if status != "fail" else status
        reasons.append(f"{kept} events left after QC (warn below {settings['warn_events']}): imprecise Treg %")
    compensation = dict(compensated.compensation or {})
    comp_record: dict[str, Any] = {"source": compensation.get("source"), "applied": bool(compensation.get("applied"))}
    if fluorescence and not comp_record["applied"]:
        status = "warn" if status != "fail" else status
        reasons.append("no spillover matrix: fluorescence was not compensated")
    negatives = negative_populations(compensated, fluorescence, keep, float(settings["negative_sd"]))
    comp_record["negative"] = negatives
    strong = {c: v["share"] for c, v in negatives.items() if v["share"] > settings["negative_share"]}
    if strong:
        status = "warn" if status != "fail" else status
        reasons.append("strongly negative events after compensation (over-compensation?): " + ", ".join(
            f"{c} {100 * s:.1f}%" for c, s in sorted(strong.items())))
    record["compensation"] = comp_record
    return QCResult(keep, status, reasons, record)
