"""Acquisition quality control before gating: margins, time, event counts, compensation.

Each check is a function on numpy arrays that returns a keep-mask (or figures) and a record;
:func:`qc_sample` runs them in the consensus order of PeacoQC and flowAI (margins, then
compensation and a transform, then time) and gives the sample a status ``pass | warn | fail``
with its reasons. Every threshold is a configurable default (``DEFAULTS``, the ``qc:`` section
of ``config.yaml``); the values come from those tools (domain.md 4.1, 5.1) and are not confirmed
for this assay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import TregAnalysisError
from .sample import Sample

__all__ = ["DEFAULTS", "QCResult", "RawChecks", "margin_events", "negative_populations", "qc_sample", "raw_checks",
           "time_qc"]

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


# Subsample sizes (not settings: they decide the cost of QC, not what it finds). A density with a
# few peaks is resolved by tens of thousands of values, and the 10% quantile of tens of thousands
# of negatives has a relative standard error near 1.5%; a million events add time, not
# information. Every count and share is still taken over all events (time_qc, negative_populations).
_CUT_VALUES = 20_000  # at most this many values choose a channel's population cuts
_SPREAD_EVENTS = 100_000  # at most this many kept events estimate the negatives' spread
_RANK_BLOCK = 65_536  # events per block when the kept events are numbered (see _kept_subsample)


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


@dataclass
class RawChecks:
    """What acquisition QC needs of the raw events (:func:`raw_checks`).

    Attributes
    ----------
    keep : ndarray of bool
        Events below every checked channel's ceiling.
    margins : dict
        Channel -> events at its ceiling.
    finite : ndarray of bool
        Events without NaN or infinity in any channel.
    time : ndarray or None
        The time column (None without a time channel or with time QC off).
    """

    keep: np.ndarray
    margins: dict[str, int]
    finite: np.ndarray
    time: np.ndarray | None


def raw_checks(sample: Sample, channels: Iterable[str], config: Mapping[str, Any] | None = None) -> RawChecks:
    """The raw-event part of :func:`qc_sample`: margins, NaN/Inf events and the time column.

    Parameters
    ----------
    sample : Sample
        The raw sample.
    channels, config
        As for :func:`qc_sample`.

    Returns
    -------
    RawChecks
        To pass to :func:`qc_sample` as ``checked``: the raw events need not be kept until then
        (a gating job frees them before the compensated copy is checked).
    """
    settings = _settings(config)
    scatter = [c for c in sample.scatter_channels if c.upper() in ("FSC-A", "FSC-H", "SSC-A")]
    follow_time = bool(settings["time"]) and sample.time_channel is not None
    # margins, NaN/Inf events and the time column in one pass over the raw matrix
    keep, margins, finite, time = _raw_checks(sample, set(channels) | set(scatter),
                                              sample.time_channel if follow_time else None)
    return RawChecks(keep, margins, finite, time)


def _settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = dict(DEFAULTS)
    unknown = sorted(set(config or {}) - set(DEFAULTS))
    if unknown:
        raise QCError(f"qc: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    settings.update(config or {})
    return settings


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

    Notes
    -----
    One pass over the raw matrix, block by block (see :func:`_raw_checks`): a block's
    per-channel maxima first, and an event-by-event comparison only in a channel whose maximum
    in that block reaches its ceiling (most blocks of most channels have no margin event).
    """
    keep, removed, _, _ = _raw_checks(sample, channels)
    return keep, removed


_BLOCK = 16_384  # raw events per block: with 14 float32 channels about 1 MB, which stays in cache


def _raw_checks(sample: Sample, channels: Iterable[str], time_channel: str | None = None
                ) -> tuple[np.ndarray, dict[str, int], np.ndarray, np.ndarray | None]:
    """Margins, NaN/Inf events and the time column from one pass over the raw events.

    Parameters
    ----------
    sample : Sample
        Raw events (row-major as read, or column-major).
    channels : iterable of str
        Channels whose ceiling is checked (see :func:`margin_events`).
    time_channel : str, optional
        A channel to copy out (contiguous, the events' dtype), e.g. the time.

    Returns
    -------
    keep : ndarray of bool
        Events below every checked ceiling.
    removed : dict
        Channel -> events at its ceiling.
    finite : ndarray of bool
        Events without NaN or infinity in any channel.
    time : ndarray or None
        The copied column.

    Notes
    -----
    A column of a row-major matrix is a strided view: reading it costs a pass over the whole
    matrix, so checking 9 ceilings, the NaN/Inf test and reading the time column one column at
    a time would read the raw matrix a dozen times. Here each block of events is read once and
    then stays in cache: its maxima and minima per channel (NaN propagates into them, so finite
    extremes prove every value of the block finite), and only where a maximum reaches a
    ceiling, or an extreme is not finite, an event-by-event test of that block.
    """
    events = sample.events
    n = sample.n_events
    checked = []
    for name in sorted(set(channels)):
        j = sample.index(name)
        top = sample.ranges[j] if sample.ranges else 0
        if top > 0:
            checked.append((name, j, top - 1))
    keep = np.ones(n, dtype=bool)
    finite = np.ones(n, dtype=bool)
    removed = {name: 0 for name, _, _ in checked}
    t_col = None if time_channel is None else sample.index(time_channel)
    time = None if t_col is None else np.empty(n, dtype=events.dtype)
    for start in range(0, n, _BLOCK):
        block = events[start : start + _BLOCK]
        highest, lowest = _column_extremes(block)
        if not (np.isfinite(highest).all() and np.isfinite(lowest).all()):
            finite[start : start + _BLOCK] = np.isfinite(block).all(axis=1)
        for name, j, ceiling in checked:
            if highest[j] < ceiling:  # False for NaN: that block is compared event by event
                continue
            hit = block[:, j] >= ceiling
            count = int(np.count_nonzero(hit))
            if count:
                removed[name] += count
                keep[start : start + _BLOCK] &= ~hit
        if time is not None:
            time[start : start + _BLOCK] = block[:, t_col]
    return keep, removed, finite, time


def _column_extremes(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maximum and minimum of each column (NaN where a column holds one).

    A row-major matrix's ``max(axis=0)`` runs a 14-wide inner loop per event and is several
    times slower than reading the matrix; seen as rows of 64 events it vectorises.
    """
    n, width = events.shape
    if not events.flags.c_contiguous or n < 64:
        return events.max(axis=0), events.min(axis=0)
    m = n - n % 64
    wide = events[:m].reshape(-1, 64 * width)
    highest = wide.max(axis=0).reshape(64, width).max(axis=0)
    lowest = wide.min(axis=0).reshape(64, width).min(axis=0)
    if m < n:
        highest = np.maximum(highest, events[m:].max(axis=0))
        lowest = np.minimum(lowest, events[m:].min(axis=0))
    return highest, lowest


def _spaced(n: int, m: int | None) -> np.ndarray | None:
    """Positions of a systematic subsample: ``m`` of ``n`` items evenly spaced in order, or None
    when ``n <= m`` (or ``m`` is None) and every item is used.

    The step ``n / m`` need not be a whole number: a whole-number stride would halve the
    subsample as soon as ``n`` is slightly above ``m``.
    """
    if m is None or n <= m:
        return None
    positions = np.arange(m, dtype=np.int64)  # floor(i * n / m), exactly and in place
    positions *= n
    positions //= m
    return positions.astype(np.intp, copy=False)


def _kept_subsample(keep: np.ndarray, m: int | None) -> np.ndarray | slice:
    """Indices of at most ``m`` kept events evenly spaced in file order (all kept events when
    there are no more than ``m``, or ``m`` is None); a slice when that is every event."""
    n_kept = int(np.count_nonzero(keep))
    if n_kept == keep.size:
        spaced = _spaced(keep.size, m)
        return slice(None) if spaced is None else spaced
    spaced = _spaced(n_kept, m)
    if spaced is None:
        return np.flatnonzero(keep)
    # the kept events' positions block by block, each block keeping those of the wanted ranks:
    # no index of every kept event (8 bytes each) is made to keep a fraction of them
    out = np.empty(spaced.size, dtype=np.intp)
    before = done = 0  # kept events before the block; ranks placed so far
    for start in range(0, keep.size, _RANK_BLOCK):
        if done == spaced.size:
            break
        positions = np.flatnonzero(keep[start : start + _RANK_BLOCK])
        stop = done + int(np.searchsorted(spaced[done:], before + positions.size))
        ranks = spaced[done:stop] - before
        np.add(positions.take(ranks), start, out=out[done:stop])
        before += positions.size
        done = stop
    return out


def _asinh(x: np.ndarray, cofactor: float) -> np.ndarray:
    """``arcsinh(x / cofactor)`` in ``x``'s float precision (float32 for float32 input).

    As ``sign(x) log(a + sqrt(a^2 + 1))`` with ``a = |x| / cofactor``: numpy's log and sqrt are
    vectorised, its arcsinh is not (5x slower). The difference from a float64 arcsinh is of the
    order of float32 rounding (about 1e-6 of the value), far below any shift time QC looks for.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    a = np.abs(x)
    a *= x.dtype.type(1.0 / cofactor)
    with np.errstate(over="ignore"):
        t = a * a
    t += 1
    np.sqrt(t, out=t)
    t += a
    np.log(t, out=t)
    if not np.isfinite(t).all():  # a * a overflowed (|x| / cofactor above 1e19 in float32)
        big = np.isinf(t) & np.isfinite(a)
        t[big] = np.log(2.0) + np.log(a[big].astype(np.float64))
    return np.copysign(t, x, out=t)


def _time_bins(t: np.ndarray, lo: float, hi: float, n_bins: int) -> np.ndarray:
    """Each time's bin of ``n_bins`` equal bins over [lo, hi], ``floor((t - lo) / (hi - lo)
    n_bins)`` capped at the last bin; computed in ``t``'s place (float64)."""
    t -= lo
    t /= hi - lo
    t *= n_bins
    b = t.astype(np.intp)
    return np.minimum(b, n_bins - 1, out=b)


def _bin_starts(time: np.ndarray, lo: float, hi: float, n_bins: int) -> np.ndarray:
    """For non-decreasing finite times: the first event of each bin (as :func:`_time_bins`
    numbers them) and ``n`` after the last, shape (n_bins + 1,).

    A bisection over the events for every bin at once: about 20 rounds of ``n_bins`` times.
    """
    n = time.size
    wanted = np.arange(n_bins + 1)
    left = np.zeros(n_bins + 1, dtype=np.intp)  # first event whose bin is >= wanted
    right = np.full(n_bins + 1, n, dtype=np.intp)
    while True:
        open_ = left < right
        if not open_.any():
            return left
        middle = (left + right) // 2
        bins = _time_bins(time[np.minimum(middle, n - 1)].astype(np.float64), lo, hi, n_bins)
        below = open_ & (bins < wanted)
        left = np.where(below, middle + 1, left)
        right = np.where(open_ & ~below, middle, right)


def _bins_of_sorted(events: np.ndarray | slice, starts: np.ndarray) -> np.ndarray:
    """The bins of ascending event indices (or of every event, for a slice) from the bins'
    first events."""
    per_bin = np.diff(starts) if isinstance(events, slice) else np.diff(np.searchsorted(events, starts))
    return np.repeat(np.arange(per_bin.size), per_bin)


def time_qc(time: np.ndarray, signals: Mapping[str, np.ndarray], keep: np.ndarray | None = None, *,
            bin_events: int = 500, max_bins: int = 500, mad: float = 6.0, consecutive_bins: int = 5,
            min_rate_change: float = 0.2, min_shift: float = 0.1,
            transform: Callable[[np.ndarray], np.ndarray] | None = None,
            subsample: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove stretches of the acquisition where the event rate or a signal departs.

    Parameters
    ----------
    time : ndarray
        Acquisition time of each event (seconds, or the instrument's ticks), file order.
    signals : mapping of str to ndarray
        Channel -> events on a log-like scale (e.g. arcsinh of compensated values), or on any
        scale that ``transform`` turns into one.
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
    transform : callable, optional
        Applied to each channel's followed values (e.g. arcsinh with a cofactor), so that
        ``signals`` can hold the untransformed columns and no transformed copy of a whole
        channel is made.
    subsample : bool
        Follow the signals on at most ``bins x bin_events`` kept events (see Notes), and
        choose each channel's population cuts on at most 20,000 of them. False follows every
        kept event and chooses the cuts on all of them: slower, and the same result when there
        are no more kept events than that (20,000 for the cuts).

    Returns
    -------
    keep : ndarray of bool
        False for the events of removed bins.
    record : dict
        ``edges`` (bin edges), ``rate`` (events per time unit), ``signal_events`` (the events
        the signals were followed on), ``signals`` (per channel, the population ``cuts`` and
        each population's per-bin ``means``), ``flagged`` and ``removed`` bins,
        ``removed_runs`` with their reasons, ``removed_events``.

    Notes
    -----
    In the spirit of PeacoQC and flowAI. Each channel's events are split into populations at
    the valleys of its overall density (:func:`treganalysis.gating.density.find_peaks`), and
    each population's mean is followed bin by bin, so that a drifting bright population is seen
    even when most events are negative. A clog shows as a run of low-rate bins followed by a
    burst; a drift as a run of shifted means at the end.

    The event rate counts every event. The signals are followed on a systematic subsample of
    the kept events: ``bins x bin_events`` of them evenly spaced in file order, i.e. on average
    ``bin_events`` per bin, the per-bin precision that ``bin_events`` promises (the bins are
    only more crowded than that when ``max_bins`` caps their number, e.g. 2,000 events per bin
    at 1M events). The population cuts come from at most 20,000 of those values, evenly
    spaced: a population worth following has a median of at least 20 events per bin of about
    ``bin_events`` (500), i.e. at least 4% of the events and 800 of 20,000 values, enough for
    a density peak of its own; a million values add time, not peaks. With fewer values than
    that, nothing is subsampled. Channels are transformed one at a time (only the followed
    values), and sums per bin and population come from one ``np.bincount`` each.
    ``signal_events`` in the record says how many events the signals were followed on. When the
    clock only runs forward (every acquisition), each bin is a run of consecutive events whose
    first event is found by bisection, with no bin number per event; the bins are the same.

    The subsample is a trade: above ``bins x bin_events`` kept events a drift is found as on a
    file of that size, not better. At 1M events every event halves the noise of a per-bin mean
    and finds smaller drifts (``subsample=False``), at about 4x the time of time QC.
    """
    n = int(np.size(time))
    time = np.asarray(time).ravel()
    keep = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    # an acquisition's clock only goes forward: then every bin is a run of consecutive events,
    # found by bisection, with no per-event bin numbers (two event-sized arrays fewer)
    ordered = (n > 1 and bool(np.all(time[1:] >= time[:-1]))  # False with a NaN
               and bool(np.isfinite(time[0]) and np.isfinite(time[-1])))
    if ordered:
        lo, hi, all_finite = float(time[0]), float(time[-1]), True
    else:
        t = np.array(time, dtype=np.float64)  # a copy: the bins are computed in place
        finite = np.isfinite(t)
        all_finite = bool(finite.all())
        if all_finite:
            lo = float(t.min()) if n else 0.0
            hi = float(t.max()) if n else 0.0
        else:
            lo = float(np.min(t[finite])) if finite.any() else 0.0
            hi = float(np.max(t[finite])) if finite.any() else 0.0
            t[~finite] = lo  # an event without a time is counted in no bin
    n_bins = int(np.clip(n // max(int(bin_events), 1), 10, max(int(max_bins), 10)))
    record: dict[str, Any] = {"bins": n_bins, "signals": {}, "removed_runs": []}
    if n < 10 * 20 or hi <= lo:
        record.update(skipped="too few events or no time span for time QC", removed_events=0)
        return np.ones(n, dtype=bool), record
    edges = np.linspace(lo, hi, n_bins + 1)
    if ordered:
        starts = _bin_starts(time, lo, hi, n_bins)
        counts = np.diff(starts).astype(np.float64)
        b = None
    else:
        b = _time_bins(t, lo, hi, n_bins)
        counts = np.bincount(b if all_finite else b[finite], minlength=n_bins).astype(np.float64)
    rate = counts / np.diff(edges)
    bad = _deviating(counts, mad, min_rate_change * _median(counts))
    reasons = {i: "event rate" for i in np.flatnonzero(bad)}
    # on average bin_events per bin: a mean per bin is as precise as bin_events promises
    followed = _kept_subsample(keep, n_bins * max(int(bin_events), 1) if subsample else None)
    bins_followed = b[followed] if b is not None else _bins_of_sorted(followed, starts)
    record["signal_events"] = int(bins_followed.size)
    for channel, values in signals.items():
        x = np.asarray(values)[followed]  # one channel at a time: only these values are copied
        if transform is not None:
            x = transform(x)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        kb = bins_followed
        ok = np.isfinite(x)
        if not ok.all():  # a value without a signal takes no part in that channel's means
            x, kb = x[ok], kb[ok]
        cuts = _population_cuts(x, _CUT_VALUES if subsample else None)
        # the population of each event, as np.searchsorted(cuts, x): how many cuts lie below it
        key = kb * (len(cuts) + 1)
        for cut in cuts:
            key += x > x.dtype.type(cut)
        size = n_bins * (len(cuts) + 1)
        n_in = np.bincount(key, minlength=size).reshape(n_bins, -1)
        sums = np.bincount(key, weights=x, minlength=size).reshape(n_bins, -1)
        means = np.divide(sums, n_in, out=np.full(sums.shape, np.nan), where=n_in > 0)
        record["signals"][channel] = {"cuts": cuts.tolist(), "means": _json_numbers(means.T, 4)}
        for p in range(means.shape[1]):
            # populations too small to follow (a few events per bin) would only add noise
            if _median(n_in[:, p]) < 20:
                continue
            flagged = _deviating(means[:, p], mad, min_shift)
            for i in np.flatnonzero(flagged & ~bad):
                reasons[i] = f"{channel} signal"
            bad |= flagged
    removed = _runs(bad, int(consecutive_bins))
    if not removed.any():
        keep_time = np.ones(n, dtype=bool)
    else:
        keep_time = ~removed[b] if b is not None else np.repeat(~removed, np.diff(starts))
    for start, stop in _run_bounds(removed):
        why = sorted({reasons[i] for i in range(start, stop) if i in reasons})
        record["removed_runs"].append({"first_bin": start, "last_bin": stop - 1, "start": float(edges[start]),
                                       "stop": float(edges[stop]), "why": why})
    record.update(edges=_json_numbers(edges, 6), rate=_json_numbers(rate, 4), flagged=np.flatnonzero(bad).tolist(),
                  removed=np.flatnonzero(removed).tolist(),
                  removed_events=int(n - np.count_nonzero(keep_time)))
    return keep_time, record


def _json_numbers(values: np.ndarray, digits: int) -> list:
    """Rounded to ``digits`` significant digits, NaN and infinities as None (valid JSON, a
    small gates.json).

    Vectorised: each value is scaled by an exact power of ten, rounded to an integer and scaled
    back by the same power (multiplying or dividing by it, whichever keeps it exact), which
    gives the double nearest the rounded decimal, as ``float(f"{v:.{digits}g}")`` does; only a
    value whose power of ten is not exact in float64 (beyond 1e22) is formatted one by one.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    rounded = np.where(finite, values, 0.0)
    nonzero = rounded != 0
    with np.errstate(divide="ignore"):
        power = (digits - 1) - np.floor(np.log10(np.abs(np.where(nonzero, rounded, 1.0)))).astype(np.int64)
    exact = np.abs(power) <= 22
    up = exact & (power >= 0)
    down = exact & (power < 0)
    scale = _POW10[np.abs(np.where(exact, power, 0))]
    rounded = np.where(up, np.rint(rounded * scale) / scale, rounded)
    rounded = np.where(down, np.rint(rounded / scale) * scale, rounded)
    odd = finite & nonzero & ~exact
    if odd.any():
        rounded[odd] = [float(f"{v:.{digits}g}") for v in values[odd]]
    if finite.all():
        return rounded.tolist()
    return np.where(finite, rounded, None).tolist()


_POW10 = np.array([float(10**k) for k in range(23)])  # exact in float64 up to 1e22


def _deviating(values: np.ndarray, mad: float, min_change: float, window: int = 5) -> np.ndarray:
    """Bins whose running mean (over ``window`` bins) is more than ``mad`` robust deviations of
    that mean, and ``min_change``, from the median bin.

    The bin-to-bin noise comes from the MAD of successive differences, which a slow drift or a
    step barely moves (the MAD of the values themselves grows with the drift it should find).
    """
    ok = np.isfinite(values)
    if np.count_nonzero(ok) < 3:
        return np.zeros(values.size, dtype=bool)
    center = _median(values[ok])
    filled = np.where(ok, values, center)
    noise = 1.4826 * _median(np.abs(np.diff(filled[ok]))) / np.sqrt(2.0)
    window = max(1, min(int(window), values.size))
    smooth = np.convolve(filled, np.ones(window) / window, mode="same")
    # the ends average fewer real bins: rescale so an edge bin is not pulled towards zero
    support = np.convolve(np.ones(values.size), np.ones(window) / window, mode="same")
    smooth = smooth / support
    distance = np.abs(smooth - center)
    return (distance > mad * noise / np.sqrt(window)) & (distance >= min_change) & ok


def _median(values: np.ndarray) -> float:
    """``np.median`` of finite values from one ``np.partition`` (a few times faster for the few
    hundred values of a per-bin series, and called about 30 times per sample)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    half = values.size // 2
    part = np.partition(values, half)
    if values.size % 2:
        return float(part[half])
    return float((part[:half].max() + part[half]) / 2)


def _population_cuts(x: np.ndarray, max_values: int | None = _CUT_VALUES) -> np.ndarray:
    """Valleys between the peaks of a channel's density: where its populations part.

    The density is estimated on at most ``max_values`` values, evenly spaced in ``x`` (None:
    all of them); a smoothed 256-bin histogram with a few peaks needs tens of thousands.
    """
    from .gating.density import binned_density, find_peaks

    x = np.asarray(x)
    if x.size < 100:
        return np.empty(0)
    spaced = _spaced(x.size, max_values)
    density = binned_density((x if spaced is None else x[spaced]).astype(np.float64), bins=256)
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
                         negative_sd: float = 6.0, *,
                         max_events: int | None = _SPREAD_EVENTS) -> dict[str, dict[str, float]]:
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
    max_events : int or None
        The spread is estimated on at most this many of the kept events, evenly spaced in file
        order (None: all of them); the share is always counted over every kept event.

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
    A channel with fewer than 100 negative events among those is not judged.

    About 40,000 negatives (of 100,000 events) give that quantile to about 1.5% (relative
    standard error ``3 / sqrt(negatives)``), which moves the limit by as much; hence the
    subsample. The share is a comparison of every event with the limit,
    minus the events QC removed, so that no copy of the kept events is made per channel.
    """
    n = compensated.n_events
    if keep is None:
        keep = np.ones(n, dtype=bool)
    keep = np.asarray(keep, dtype=bool)
    kept = int(np.count_nonzero(keep))
    dropped = np.flatnonzero(~keep) if kept < n else None
    sample = _kept_subsample(keep, max_events)
    out = {}
    for channel in channels:
        x = compensated.column(channel)[sample]
        below_zero = int(np.count_nonzero(x < 0))
        if below_zero < 100:
            continue
        spread = _negative_quantile(x, below_zero, 0.10) / 0.1257
        out[channel] = {"spread": spread, "limit": -negative_sd * spread}
    below = _count_below(compensated.events, {compensated.index(c): v["limit"] for c, v in out.items()})
    for channel, v in out.items():
        count = below[compensated.index(channel)]
        if dropped is not None and count:
            count -= int(np.count_nonzero(compensated.column(channel)[dropped] < v["limit"]))
        v["share"] = count / kept
    return out


def _count_below(events: np.ndarray, limits: Mapping[int, float]) -> dict[int, int]:
    """Events below a limit in each column (column index -> limit).

    A column-major matrix's columns are counted one by one. A row-major matrix (e.g. a sample
    that was not compensated) is read block by block instead: each of its columns is a strided
    view, and counting them one by one would read the whole matrix once per column.
    """
    if events.flags.f_contiguous or len(limits) < 2:
        return {j: int(np.count_nonzero(events[:, j] < limit)) for j, limit in limits.items()}
    below = dict.fromkeys(limits, 0)
    for start in range(0, events.shape[0], _BLOCK):
        block = events[start : start + _BLOCK]
        for j, limit in limits.items():
            below[j] += int(np.count_nonzero(block[:, j] < limit))
    return below


def _negative_quantile(x: np.ndarray, k: int, q: float) -> float:
    """``np.quantile(-x[x < 0], q)`` (linear interpolation) for ``k`` negative values in ``x``,
    from one ``np.partition`` of ``x``, without copying out the negatives: the negatives are
    the ``k`` smallest values, and ``-x`` reverses their order. (One position and the maximum
    below it: a partition at two positions is several times slower in numpy.)"""
    h = q * (k - 1)
    lo = int(np.floor(h))
    frac = h - lo
    i = k - 1 - lo  # position in ascending x of the lo-th smallest |negative|
    part = np.partition(x, i)
    a = -float(part[i])
    if frac == 0 or i == 0:
        return a
    b = -float(part[:i].max())  # ascending position i - 1
    return a + (b - a) * frac


def qc_sample(sample: Sample, compensated: Sample, channels: Iterable[str],
              config: Mapping[str, Any] | None = None, signals: Iterable[str] | None = None, *,
              checked: RawChecks | None = None) -> QCResult:
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
    checked : RawChecks, optional
        :func:`raw_checks` of the raw sample, done already (``sample`` is then only asked for
        its channels and keywords: the compensated sample serves).

    Returns
    -------
    QCResult

    Notes
    -----
    Cost (about 0.08 s for 1M events and 10 followed channels on one core): the raw matrix is
    read once, block by block, for margins, NaN/Inf events and the time
    (:func:`_raw_checks`); each followed channel is transformed in float32, one at a time and
    only for the events time QC follows (:func:`time_qc`); the negatives' spread comes from at
    most 100,000 kept events (:func:`negative_populations`). Every count, share and event rate
    is still taken over all events.
    """
    settings = _settings(config)
    channels = sorted(set(channels))
    fluorescence = sorted(set(channels if signals is None else signals) & set(compensated.fluorescence_channels))
    time_channel = sample.time_channel
    follow_time = bool(settings["time"]) and time_channel is not None
    checked = checked if checked is not None else raw_checks(sample, channels, settings)
    if checked.keep.shape != (sample.n_events,):
        raise QCError(f"{sample.name}: the raw checks are of {checked.keep.size} events, the sample has "
                      f"{sample.n_events}: pass raw_checks() of this sample")
    margins, finite, time = checked.margins, checked.finite, checked.time
    if follow_time and time is None:  # checked with time QC off: the time is not compensated
        time = compensated.column(time_channel)
    reasons: list[str] = []
    n = sample.n_events
    # NaN/Inf events (a broken acquisition, a mislabelled byte order) take no part in anything
    nonfinite = int(n - np.count_nonzero(finite))
    keep = checked.keep & finite  # a new mask: ``checked`` is left as it was
    if nonfinite:
        reasons.append(f"{nonfinite} events with NaN or infinite values removed")
    if n == 0:
        return QCResult(keep, "fail", ["the file holds no events"],
                        {"settings": settings, "events": {"total": 0, "kept": 0, "removed": 0, "removed_share": 0.0},
                         "margins": {"removed": margins, "removed_events": 0}, "time": {"skipped": "no events"},
                         "compensation": {}})
    record: dict[str, Any] = {"settings": settings, "events": {"total": n}}
    record["margins"] = {"removed": margins, "removed_events": int(n - np.count_nonzero(keep)) - nonfinite}
    record["events"]["nonfinite"] = nonfinite
    if follow_time:
        cofactor = float(settings["cofactor"])
        # views of the compensated columns; time_qc transforms only the events it follows,
        # one channel at a time (no dict of transformed channels)
        columns = {c: compensated.column(c) for c in fluorescence}
        keep_time, time_record = time_qc(
            time, columns, keep, bin_events=int(settings["bin_events"]),
            max_bins=int(settings["max_bins"]), mad=float(settings["mad"]),
            consecutive_bins=int(settings["consecutive_bins"]),
            min_rate_change=float(settings["min_rate_change"]), min_shift=float(settings["min_shift"]),
            transform=lambda x: _asinh(x, cofactor))
        time_record["channel"] = time_channel
        time_record["unit"] = "s" if sample.metadata.get("$TIMESTEP", "").strip() else "ticks"
        removed_by_time = int(np.count_nonzero(keep & ~keep_time))
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
    kept = int(np.count_nonzero(keep))
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
