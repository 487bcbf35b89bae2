"""Pre-binned views of a gated sample: what the QC page draws, without the events.

A gating job bins each gate's parent events once (``np.bincount`` on quantised coordinates) and
saves the counts with the gate geometry (:func:`save_views`); the report job draws them
(:mod:`treganalysis.plot`). A page therefore never carries a million points, and the gating job
never imports plotly.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import write_bytes_atomic
from .errors import TregAnalysisError

if TYPE_CHECKING:
    from .gating.strategy import GatingResult

__all__ = ["bin2d", "gate_views", "load_views", "save_views"]

BINS_2D = 128
BINS_1D = 256


def bin2d(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float],
          bins: int = BINS_2D) -> np.ndarray:
    """Counts of events on a ``bins x bins`` grid, events outside the ranges clipped to the edge.

    Returns
    -------
    ndarray of uint32, shape (bins, bins)
        Rows along ``y``, columns along ``x`` (as a heatmap's ``z``).
    """
    ix = _index(x, x_range, bins)
    iy = _index(y, y_range, bins)
    return np.bincount(iy * bins + ix, minlength=bins * bins).astype(np.uint32).reshape(bins, bins)


def _index(v: np.ndarray, span: tuple[float, float], bins: int) -> np.ndarray:
    lo, hi = span
    scaled = (np.asarray(v, dtype=np.float32) - np.float32(lo)) * np.float32(bins / (hi - lo))
    return np.clip(scaled, 0, bins - 1).astype(np.intp)


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
    axes: dict[str, dict[str, Any]] = {}

    def axis(channel: str) -> dict[str, Any]:
        if channel not in axes:
            values = data[channel][root] if root.any() else data[channel]
            params = transforms.get(channel, {"transform": "linear"})
            if params.get("transform") == "logicle":
                lo = min(float(np.quantile(values, 0.001)) if values.size else 0.0, 0.0) - 0.02
                span = (max(lo, -0.25), 1.0)
            else:
                top = float(np.quantile(values, 0.999)) if values.size else 1.0
                span = (0.0, max(top * 1.05, 1.0))
            axes[channel] = {"range": list(span), "transform": params, "label": labels.get(channel, "")}
        return axes[channel]

    gates, thresholds = [], []
    for record in result.gates:
        if "threshold" in record and "population" not in record:
            on = record.get("on")
            channel = record.get("channel")
            if channel not in data or on not in masks:
                continue  # pooled/FMO thresholds are drawn on the populations that use them
            a = axis(channel)
            values = data[channel][masks[on]]
            counts, edges = np.histogram(values, bins=BINS_1D, range=tuple(a["range"]))
            thresholds.append({"threshold": record["threshold"], "channel": channel, "on": on,
                               "counts": counts.astype(np.uint32), "edges": edges.astype(np.float32),
                               "value": record["value"], "value_raw": record["value_raw"],
                               "method": record["method_used"], "fallback": record["fallback"],
                               "confidence": record["confidence"]})
            continue
        if record.get("status") != "ok" or record.get("method") == "not":
            continue
        x, y = _view_axes(record, data)
        if x is None:
            continue
        parent = masks.get(record["parent"])
        if parent is None:
            continue
        ax, ay = axis(x), axis(y)
        counts = bin2d(data[x][parent], data[y][parent], tuple(ax["range"]), tuple(ay["range"]), bins)
        view = {"population": record["population"], "parent": record["parent"], "x": x, "y": y,
                "counts": counts, "method": record["method"], "events_in": record["events_in"],
                "events_out": record["events_out"],
                "pct_parent": 100.0 * record["events_out"] / record["events_in"] if record["events_in"] else float("nan")}
        view.update(_geometry(record, x, y))
        gates.append(view)
    return {"sample": sample.name, "axes": axes, "gates": gates, "thresholds": thresholds, "bins": bins}


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
    np.savez_compressed(buffer, **arrays)
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
