"""Pre-binned views of a gated sample: what the QC page draws, without the events.

A gating job bins each gate's parent events once (``np.bincount`` on quantised coordinates, see
:func:`gate_views`) and saves the counts with the gate geometry (:func:`save_views`); the report
job draws them (:mod:`treganalysis.plot`). A page therefore never carries a million points, and the gating job
never imports plotly.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import write_bytes_atomic
from ._quantile import lerp, linear_quantile
from .errors import TregAnalysisError

if TYPE_CHECKING:
    from .gating.strategy import GatingResult

__all__ = ["bin2d", "gate_views", "load_views", "save_views"]

BINS_2D = 128
BINS_1D = 256
# Axis ranges (_kept_quantile): with fewer kept events than _SMALL, np.quantile of all of them
# (a millisecond or less); with more, a systematic subsample of about _BOUND_SAMPLE of them
# bounds the tail.
_SMALL = 1 << 16
_BOUND_SAMPLE = 1 << 14


def bin2d(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float],
          bins: int = BINS_2D) -> np.ndarray:
    """Counts of events on a ``bins x bins`` grid, events outside the ranges clipped to the edge.

    Returns
    -------
    ndarray of uint32, shape (bins, bins)
        Rows along ``y``, columns along ``x`` (as a heatmap's ``z``).

    Raises
    ------
    TregAnalysisError
        If a range is not two finite numbers in increasing order, or ``x`` or ``y`` holds NaN:
        such an event has no place on the grid (acquisition QC removes them before gating;
        select ``np.isfinite(x) & np.isfinite(y)`` first).
    """
    ix = _index(x, x_range, bins, "x")
    iy = _index(y, y_range, bins, "y")
    return np.bincount(iy * bins + ix, minlength=bins * bins).astype(np.uint32).reshape(bins, bins)


def _index(v: np.ndarray, span: tuple[float, float], bins: int, name: str) -> np.ndarray:
    lo, hi = span
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise TregAnalysisError(f"bin2d: {name}_range must be two finite numbers, low < high; got {tuple(span)}")
    scaled = (np.asarray(v, dtype=np.float32) - np.float32(lo)) * np.float32(bins / (hi - lo))
    np.clip(scaled, 0, bins - 1, out=scaled)
    # NaN survives the clip (and would be cast to an arbitrary integer): the max and min are NaN then
    if scaled.size and np.isnan(scaled.max()):
        raise TregAnalysisError(f"bin2d: {name} holds {int(np.isnan(scaled).sum())} NaN value(s), which have no bin; "
                                "keep the events where np.isfinite(x) & np.isfinite(y) first")
    return scaled.astype(np.intp)


def gate_views(result: "GatingResult", bins: int = BINS_2D) -> dict[str, Any]:
    """Binned 2-D views of every gate and 1-D histograms of every threshold.

    Parameters
    ----------
    result : GatingResult
        From :func:`treganalysis.gate_sample` (uses its ``transformed`` channels and masks).
    bins : int
        Bins per axis of the 2-D views.

    Returns
    -------
    dict
        ``axes`` (channel -> range, scale, transform parameters, marker label), ``gates`` (one
        entry per drawn gate: population, parent, x/y channels, counts, the gate's geometry, % of
        parent), ``thresholds`` (one per threshold: channel, population it was chosen on,
        histogram, value, method).

    Notes
    -----
    Fluorescence is shown on the scale it was gated on (Logicle), scatter linear. A rule gate on
    two markers is drawn as their 2-D plot with both cuts; on one marker, against SSC-A. The
    parent's events are the ones drawn, so a plot shows exactly what its gate saw.

    An axis spans the 0.1 % (Logicle, minus a margin) or 99.9 % (linear, plus 5 %) quantile of
    the kept events, found exactly without sorting them all (:func:`_kept_quantile`). Each
    event's bin on an axis is computed once, on the thresholds' ``BINS_1D`` grid
    (:func:`_slots`; :class:`_Binner` decides over which events), and a gate's view is one
    ``np.bincount`` of its parent's pairs of grid bins, folded to ``bins`` per axis with the
    events outside a range in the edge bins: exactly :func:`bin2d` of the parent's events, as
    both scale in float32 by factors a power of two apart (``bins`` that does not divide
    ``BINS_1D`` by a power of two takes :func:`bin2d` itself). A threshold's histogram is the
    margin of a view on the same population and channel (or its own count) with the events
    outside the range left out, as ``np.histogram`` leaves them. An event within float32
    rounding of a bin edge may be counted in the bin beside the one ``np.histogram`` (which
    compares it with float32 edges) puts it in, and one at the very top of the range may be
    left out (a few events in a million, in the simulated samples). Events are expected without
    NaN (acquisition QC removes them): the folded views give a NaN some slot on the grid, where
    :func:`bin2d` refuses it.
    """
    sample = result.sample
    data = dict(result.transformed)
    for name in ("FSC-A", "FSC-H", "SSC-A"):
        if name in sample.channels and name not in data:
            data[name] = sample.column(name)
    transforms = result.provenance.get("transforms", {}) or {}
    labels = {channel: marker for marker, channel in result.panel.items() if channel}
    root = result.qc.keep if result.qc is not None else np.ones(sample.n_events, dtype=bool)
    masks = {"root": root, **result.masks}
    n_kept = int(np.count_nonzero(root))
    # no event kept: the ranges come from all events (the views are then empty anyway)
    keep = None if n_kept in (0, root.size) else root

    # Which views to draw, in the records' order, and the channels of their axes in order of
    # first use (the order of the saved JSON's axes).
    drawn: list[tuple[Mapping[str, Any], str, str]] = []
    chosen: list[tuple[Mapping[str, Any], str]] = []
    needed: dict[str, None] = {}
    for record in result.gates:
        if "threshold" in record and "population" not in record:
            channel = record.get("channel")
            if channel not in data or record.get("on") not in masks:
                continue  # pooled/FMO thresholds are drawn on the populations that use them
            needed[channel] = None
            chosen.append((record, channel))
            continue
        if record.get("status") != "ok" or record.get("method") == "not":
            continue
        x, y = _view_axes(record, data)
        if x is None or masks.get(record["parent"]) is None:
            continue
        needed[x] = needed[y] = None
        drawn.append((record, x, y))

    # Every pass below reads a channel whole, so a strided one is copied once first.
    data.update(_columns(sample, data, needed))
    axes: dict[str, dict[str, Any]] = {}
    for channel in needed:
        values = data[channel] = np.ascontiguousarray(data[channel])
        count = n_kept if keep is not None else values.size
        params = transforms.get(channel, {"transform": "linear"})
        if params.get("transform") == "logicle":
            lo = min(_kept_quantile(values, keep, count, 0.001) if count else 0.0, 0.0) - 0.02
            span = (max(lo, -0.25), 1.0)
        else:
            top = _kept_quantile(values, keep, count, 0.999) if count else 1.0
            span = (0.0, max(top * 1.05, 1.0))
        axes[channel] = {"range": list(span), "transform": params, "label": labels.get(channel, "")}

    fold = BINS_1D // bins if 0 < bins <= BINS_1D and BINS_1D % bins == 0 else 0
    fold = fold if fold & (fold - 1) == 0 else 0  # 0: the 2-D views take bin2d (see Notes)
    # A threshold's histogram is the margin of a view on its population and channel when there
    # is one; the others count their own. A population's gathered events are dropped after its
    # last use (they are the bulk of the memory here).
    wanted = {(record["on"], channel) for record, channel in chosen}
    shown = {(record["parent"], c) for record, x, y in drawn for c in (x, y)} if fold else set()
    uses = Counter([record["parent"] for record, _, _ in drawn]
                   + [record["on"] for record, channel in chosen if (record["on"], channel) not in shown])
    binner = _Binner(data, axes, masks)

    def used(population: str) -> None:
        uses[population] -= 1
        if not uses[population]:
            binner.release(population)

    gates = []
    margins: dict[tuple[str, str], np.ndarray] = {}  # (population, channel) -> 1-D grid counts
    folded: dict[tuple[str, str, str], np.ndarray] = {}  # (population, x, y) -> a view's counts
    for record, x, y in drawn:
        parent = record["parent"]
        if not fold:
            mask = masks[parent]
            counts = bin2d(data[x][mask], data[y][mask], tuple(axes[x]["range"]), tuple(axes[y]["range"]), bins)
        elif (parent, x, y) in folded:  # two gates drawn on the same plot (treg, cd25neg_foxp3pos)
            counts = folded[parent, x, y].copy()
        else:
            grid = binner.grid(parent, x, y)
            for channel, over in ((x, 0), (y, 1)):
                if (parent, channel) in wanted and (parent, channel) not in margins:
                    margins[parent, channel] = grid.sum(axis=over)[1:-1]
            counts = folded[parent, x, y] = _fold(grid, fold)
            counts = counts.copy()  # each view owns its counts
        used(parent)
        view = {"population": record["population"], "parent": parent, "x": x, "y": y,
                "counts": counts, "method": record["method"], "events_in": record["events_in"],
                "events_out": record["events_out"],
                "pct_parent": 100.0 * record["events_out"] / record["events_in"] if record["events_in"] else float("nan")}
        view.update(_geometry(record, x, y))
        gates.append(view)

    thresholds = []
    for record, channel in chosen:
        on = record["on"]
        if (on, channel) in margins:
            counts = margins[on, channel]
        else:
            counts = binner.line(on, channel)[1:-1]
            used(on)
        # np.histogram's edges (float32 for float32 events), so the bars sit where they did
        edges = np.histogram_bin_edges(np.empty(0, dtype=data[channel].dtype), bins=BINS_1D,
                                       range=tuple(axes[channel]["range"]))
        thresholds.append({"threshold": record["threshold"], "channel": channel, "on": on,
                           "counts": counts.astype(np.uint32), "edges": edges.astype(np.float32),
                           "value": record["value"], "value_raw": record["value_raw"],
                           "method": record["method_used"], "fallback": record["fallback"],
                           "confidence": record["confidence"]})
    return {"sample": sample.name, "axes": axes, "gates": gates, "thresholds": thresholds, "bins": bins}


def _columns(sample: Any, data: Mapping[str, np.ndarray], channels: Iterable[str]) -> dict[str, np.ndarray]:
    """Contiguous copies of the channels that are columns of a row-major event matrix.

    Copying a column of a row-major (events x channels) matrix reads the whole matrix (every
    row's cache line), so the scatter columns are copied together, in one pass over the rows
    (``np.take`` along the channels), instead of once each. A channel that is not such a view
    (contiguous, or computed) is left out.
    """
    events = getattr(sample, "events", None)
    if not isinstance(events, np.ndarray) or events.ndim != 2 or not events.flags.c_contiguous:
        return {}
    found: dict[str, int] = {}
    for channel in channels:
        values = data[channel]
        if values.flags.c_contiguous or list(sample.channels).count(channel) != 1:
            continue
        column = sample.column(channel)
        # the same view: same memory, same steps
        if (values.__array_interface__["data"][0] == column.__array_interface__["data"][0]
                and values.strides == column.strides and values.shape == column.shape
                and values.dtype == column.dtype):
            found[channel] = sample.index(channel)
    if len(found) < 2:
        return {}
    block = np.take(events, list(found.values()), axis=1)  # (events, k): small rows, one pass
    return {channel: np.ascontiguousarray(block[:, i]) for i, channel in enumerate(found)}


class _Binner:
    """Grid counts (:func:`_slots`) of populations' events, each event's slots computed once.

    A population with most events in (three quarters or more: the root, cells, singlets) is
    counted as every event less the few outside it, which gathers only those few; any other is
    gathered (``take`` on its indices), its slots on a channel taken from the channel's slots of
    every event when a dense population needed those, else computed from its gathered values
    (elementwise, so the same numbers) - which bins a channel drawn only on CD4 T cells on a
    quarter of the events.
    """

    def __init__(self, data: Mapping[str, np.ndarray], axes: Mapping[str, Mapping[str, Any]],
                 masks: Mapping[str, np.ndarray]) -> None:
        self.data, self.axes, self.masks = data, axes, masks
        self.every: dict[str, np.ndarray] = {}  # channel -> slots of every event
        self.populations: dict[str, tuple[bool, np.ndarray]] = {}  # -> (dense, indices out/in)
        self.gathered: dict[tuple[str, str], np.ndarray] = {}
        self.grids: dict[tuple[str, str], np.ndarray] = {}  # (x, y) -> grid counts of every event

    def grid(self, population: str, x: str, y: str) -> np.ndarray:
        """Grid counts of a population's events, shape ``(BINS_1D + 2, BINS_1D + 2)``, rows along y."""
        dense, index = self._population(population)
        if not dense:
            return _grid_counts(self._gather(population, x, index), self._gather(population, y, index))
        if (x, y) not in self.grids:  # shared by the root's and the singlets' FSC-A/SSC-A views
            self.grids[x, y] = _grid_counts(self._every(x), self._every(y))
        counts = self.grids[x, y]
        if index.size:
            counts = counts - _grid_counts(self._every(x).take(index), self._every(y).take(index))
        return counts

    def line(self, population: str, channel: str) -> np.ndarray:
        """Grid counts of a population's events on one channel, ``BINS_1D + 2`` slots."""
        width = BINS_1D + 2
        dense, index = self._population(population)
        if not dense:
            return np.bincount(self._gather(population, channel, index), minlength=width)
        counts = np.bincount(self._every(channel), minlength=width)
        if index.size:
            counts = counts - np.bincount(self._every(channel).take(index), minlength=width)
        return counts

    def release(self, population: str) -> None:
        """Forget a population's indices and gathered slots (counted again if asked again)."""
        self.populations.pop(population, None)
        for key in [key for key in self.gathered if key[0] == population]:
            del self.gathered[key]

    def _population(self, name: str) -> tuple[bool, np.ndarray]:
        if name not in self.populations:
            mask = self.masks[name]
            dense = 4 * int(np.count_nonzero(mask)) >= 3 * mask.size
            self.populations[name] = (dense, np.flatnonzero(~mask if dense else mask))
        return self.populations[name]

    def _every(self, channel: str) -> np.ndarray:
        if channel not in self.every:
            self.every[channel] = _slots(self.data[channel], self.axes[channel]["range"])
        return self.every[channel]

    def _gather(self, population: str, channel: str, index: np.ndarray) -> np.ndarray:
        if (population, channel) not in self.gathered:
            if channel in self.every:
                found = self.every[channel].take(index)
            else:
                found = _slots(self.data[channel].take(index), self.axes[channel]["range"])
            self.gathered[population, channel] = found
        return self.gathered[population, channel]


def _kept_quantile(values: np.ndarray, keep: np.ndarray | None, n_kept: int, q: float) -> float:
    """``float(np.quantile(values[keep], q))`` for a tail quantile, without sorting every event.

    Parameters
    ----------
    values : ndarray
        One channel, all events (any layout).
    keep : ndarray of bool or None
        The events the quantile is of (None: all).
    n_kept : int
        How many those are (``keep.sum()``, or ``values.size``).
    q : float
        The quantile, in a tail (0.001 or 0.999 here).

    Returns
    -------
    float
        The same number as ``np.quantile`` of the kept events: the same two order statistics,
        interpolated as its "linear" method does.

    Notes
    -----
    A systematic subsample of about ``_BOUND_SAMPLE`` kept events places a bound five times the
    tail's share deep; one comparison over the events picks the few beyond it (about 0.5 %),
    and the order statistics the quantile needs are found among them. If too few are beyond
    the bound (drawn badly, or degenerate data), or there are too few events for this to pay,
    or the values are not floating point, ``np.quantile`` of all kept events is used.
    """
    if n_kept < _SMALL or values.dtype.kind != "f":
        return _plain_quantile(values, keep, q)
    upper = q > 0.5
    step = max(1, n_kept // _BOUND_SAMPLE)
    sample = values[::step] if keep is None else values[::step][keep[::step]]
    if sample.size < _BOUND_SAMPLE // 4:
        return _plain_quantile(values, keep, q)
    deep = int(5.0 * (1.0 - q if upper else q) * sample.size)
    rank = sample.size - 1 - deep if upper else deep
    bound = np.partition(sample, rank)[rank]
    index = np.flatnonzero(values > bound if upper else values < bound)
    if keep is not None:
        index = index[keep[index]]
    # np.quantile's "linear" method: between the order statistics at floor((n - 1) q) and
    # the next, by the fraction
    position = (n_kept - 1) * q
    low = math.floor(position)
    high = min(low + 1, n_kept - 1)
    first = n_kept - index.size if upper else 0  # rank of the first event beyond the bound
    if not first <= low <= high < first + index.size:
        return _plain_quantile(values, keep, q)
    tail = np.sort(values[index])
    return lerp(tail[low - first], tail[high - first], position - low)  # numpy scalars of the values' dtype


def _plain_quantile(values: np.ndarray, keep: np.ndarray | None, q: float) -> float:
    subset = values if keep is None else values[keep]
    if subset.size == 0 or (subset.dtype.kind == "f" and np.isnan(subset).any()):
        return float(np.quantile(subset, q))  # numpy's own answer (an error, or NaN)
    return linear_quantile(subset, q)


def _slots(values: np.ndarray, span: Sequence[float]) -> np.ndarray:
    """Each event's slot on a channel's ``BINS_1D`` grid: 0 below the range, 1 to ``BINS_1D``
    the bins, ``BINS_1D + 1`` at or above its top (uint16).

    Scaled as :func:`bin2d` scales (float32 throughout) with a factor a power of two apart, so
    a view's bin is exactly a fold of grid bins. A NaN (QC removes every one before gating)
    gets some slot on the grid, never one beyond it.
    """
    lo, hi = span
    scaled = np.subtract(np.asarray(values, dtype=np.float32), np.float32(lo))
    scaled *= np.float32(BINS_1D / (hi - lo))
    np.floor(scaled, out=scaled)
    np.clip(scaled, -1, BINS_1D, out=scaled)
    scaled += 1  # whole numbers from 0 to BINS_1D + 1: exact
    with np.errstate(invalid="ignore"):  # NaN to an integer
        out = scaled.astype(np.uint16)
    if out.max(initial=0) > BINS_1D + 1:  # NaN cast beyond the grid (np.minimum is 10x slower than max)
        np.minimum(out, BINS_1D + 1, out=out)
    return out


def _grid_counts(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Counts of (y, x) grid slot pairs: shape (BINS_1D + 2, BINS_1D + 2), rows along y."""
    width = BINS_1D + 2
    # uint32 keys: from uint16 slots, building intp keys (which np.bincount would take without
    # its own conversion) costs more than that conversion
    key = np.multiply(y, width, dtype=np.uint32)
    np.add(key, x, out=key)
    return np.bincount(key, minlength=width * width).reshape(width, width)


def _fold(grid: np.ndarray, factor: int) -> np.ndarray:
    """A view's counts (uint32, ``BINS_1D // factor`` per axis) from grid-slot counts: each
    bin the sum of ``factor`` grid bins, the slots beyond the range added to the edge bins."""
    grid = grid.astype(np.uint32)  # counts of at most the events: uint32 holds them, and adds faster
    columns = grid[:, 1:-1:factor].copy()
    for k in range(1, factor):
        columns += grid[:, 1 + k:-1:factor]
    columns[:, 0] += grid[:, 0]
    columns[:, -1] += grid[:, -1]
    counts = columns[1:-1:factor].copy()
    for k in range(1, factor):
        counts += columns[1 + k:-1:factor]
    counts[0] += columns[0]
    counts[-1] += columns[-1]
    return counts


def _view_axes(record: Mapping[str, Any], data: Mapping[str, np.ndarray]) -> tuple[str | None, str | None]:
    channels = list(record.get("channels") or [])
    if record.get("method") == "rule" and len(channels) == 1:
        channels.append("SSC-A")
    if len(channels) < 2 or not all(c in data for c in channels[:2]):
        return None, None
    return channels[0], channels[1]


def _geometry(record: Mapping[str, Any], x: str, y: str) -> dict[str, Any]:
    """The gate drawn in the view's coordinates: cuts (axis, value, side), an ellipse outline,
    or the singlet ratio line."""
    method = record.get("method")
    if method == "gmm_ellipse":
        mean = np.asarray(record["mean"], dtype=float)
        cov = np.asarray(record["covariance"], dtype=float)
        angle = np.linspace(0.0, 2.0 * np.pi, 121)
        circle = np.stack([np.cos(angle), np.sin(angle)])
        outline = mean[:, None] + np.linalg.cholesky(cov) @ circle * np.sqrt(record["distance_square"])
        return {"shape": "ellipse", "outline": outline.astype(np.float32)}
    if method == "singlet_ratio":
        return {"shape": "ratio", "ratio": float(record["cuts"][0]["value"])}
    cuts = [{"axis": "x" if i == 0 else "y", "value": float(c["value"]), "side": c["side"],
             "threshold": c["threshold"], "method": c["method_used"], "fallback": c["fallback"]}
            for i, c in enumerate(record.get("cuts", []))]
    return {"shape": "cuts", "cuts": cuts}


def save_views(views: Mapping[str, Any], path: str | Path) -> Path:
    """Write views as one ``.npz``: the arrays, and the rest as JSON (atomically)."""
    import io

    arrays: dict[str, np.ndarray] = {}
    meta = {"sample": views["sample"], "axes": views["axes"], "bins": views["bins"], "gates": [], "thresholds": []}
    for kind in ("gates", "thresholds"):
        for i, item in enumerate(views[kind]):
            entry = {}
            for key, value in item.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{kind}/{i}/{key}"] = value
                    entry[key] = {"array": f"{kind}/{i}/{key}"}
                else:
                    entry[key] = value
            meta[kind].append(entry)
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=float).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    # What np.savez_compressed writes (a zip of .npy members, deflated), at deflate level 1
    # rather than zlib's default 6: the ~0.7 MB of counts compress 5-8x faster, the file is
    # ~10 % larger, and np.load reads either.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return write_bytes_atomic(Path(path), buffer.getvalue())


def load_views(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_views` wrote."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode())
            for kind in ("gates", "thresholds"):
                for item in meta[kind]:
                    for key, value in list(item.items()):
                        if isinstance(value, dict) and set(value) == {"array"}:
                            item[key] = archive[value["array"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise TregAnalysisError(f"{path}: not a views file written by treganalysis ({type(exc).__name__}: {exc}); "
                                "gate the sample again") from None
    return meta
