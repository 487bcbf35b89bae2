"""Plotly figures of one sample's gating and QC, from pre-binned views and the gate records.

Every figure draws numbers a gating job already computed (:mod:`treganalysis.views`, the
``qc`` record of ``gates.json``); none sees events. Text from files (channel names, markers,
sample names) is HTML-escaped before it goes into a figure, since plotly renders a few tags in
titles and labels.

A figure is a plain dict (``{"data": [...], "layout": {...}}``), written as plotly's validated
``go.Figure(...).to_dict()`` of the same figure would hold it: the same keys in the same order,
numeric arrays as plotly.js typed arrays. Building ``go.Figure`` objects validated every property
and cost about 20 ms a figure, most of a sample page's drawing (about 0.3 s a page); a dict costs
a fraction of a millisecond. tests/test_report.py checks that plotly's validation leaves each
figure unchanged; :func:`as_figure` gives the ``go.Figure`` for interactive use.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .transforms import _logicle_constants, _logicle_exact

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["as_figure", "estimates_figure", "funnel_figure", "gate_figure", "slope_figure", "spillover_figure",
           "threshold_figure", "time_figure", "trajectory_figure", "visit_medians_figure", "waterfall_figure"]

Figure = dict[str, Any]

# A small template of our own: plotly's named templates add ~7 kB of JSON to every figure.
# Keys in alphabetical order, as plotly's constructors store them.
TEMPLATE: dict[str, Any] = {"layout": {
    "font": {"family": "Helvetica, Arial, sans-serif", "size": 11},
    "margin": {"b": 45, "l": 55, "r": 10, "t": 40}, "paper_bgcolor": "white", "plot_bgcolor": "white",
    "xaxis": {"linecolor": "#444", "showline": True, "ticks": "outside", "zeroline": False},
    "yaxis": {"linecolor": "#444", "showline": True, "ticks": "outside", "zeroline": False},
}}
DENSITY_SCALE = [[0.0, "#ffffff"], [0.004, "#e8ecf8"], [0.25, "#6b8fd6"], [0.5, "#2fb38a"],
                 [0.75, "#f2c12e"], [1.0, "#d7301f"]]
# plotly's named colour scale "Reds" (plotly.colors.sequential.Reds), as its validator expands it
REDS = [[i / 8, c] for i, c in enumerate(["rgb(255,245,240)", "rgb(254,224,210)", "rgb(252,187,161)",
                                          "rgb(252,146,114)", "rgb(251,106,74)", "rgb(239,59,44)", "rgb(203,24,29)",
                                          "rgb(165,15,21)", "rgb(103,0,13)"])]
GATE_COLOUR = "#d6006f"
METHOD_COLOUR = {"valley": "#1b7837", "tail": "#762a83", "quantile": "#b35806", "fmo": "#2166ac",
                 "median - k MAD": "#1b7837"}
# plotly.js typed-array codes of the numpy dtypes (plotly.py sends numeric arrays this way)
_TYPED = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
          "float32": "f4", "float64": "f8"}


def as_figure(fig: Figure) -> "go.Figure":
    """A figure of this module as a validated ``plotly.graph_objects.Figure`` (to show or edit it)."""
    import plotly.graph_objects as go

    return go.Figure(fig)


def _typed(values: Any) -> Any:
    """A numeric numpy array as a plotly.js typed array (``dtype``, base64 ``bdata``, ``shape``),
    as plotly.py encodes arrays; other values (lists, text arrays) unchanged."""
    if not isinstance(values, np.ndarray) or values.size == 0:
        return values
    if values.dtype == np.int64:  # plotly.js has no 64-bit integers: the smallest type that holds them
        low, high = int(values.min()), int(values.max())
        values = values.astype(next((t for t in (np.int8, np.int16, np.int32)
                                     if np.iinfo(t).min <= low and high <= np.iinfo(t).max), np.int64))
    code = _TYPED.get(str(values.dtype))
    if code is None:
        return values
    spec = {"dtype": code, "bdata": base64.b64encode(np.ascontiguousarray(values)).decode("ascii")}
    if values.ndim > 1:
        spec["shape"] = str(values.shape)[1:-1]
    return spec


def _vline(x: Any, line: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A vertical line across the plot (plotly's ``add_vline``)."""
    return {"line": dict(line), **extra, "type": "line", "x0": x, "x1": x, "xref": "x", "y0": 0, "y1": 1,
            "yref": "y domain"}


def _hline(y: Any, line: Mapping[str, Any]) -> dict[str, Any]:
    """A horizontal line across the plot (plotly's ``add_hline``)."""
    return {"line": dict(line), "type": "line", "x0": 0, "x1": 1, "xref": "x domain", "y0": y, "y1": y, "yref": "y"}


def _note(text_: str, x: Any, y: Any, xanchor: str, yanchor: str, xref: str, yref: str) -> dict[str, Any]:
    """A shape's label (the ``annotation_text`` of plotly's ``add_vrect``/``add_hline``...)."""
    return {"font": {"size": 10}, "showarrow": False, "text": text_, "x": x, "xanchor": xanchor, "xref": xref, "y": y,
            "yanchor": yanchor, "yref": yref}


def _title(text_: str, size: int) -> dict[str, Any]:
    return {"font": {"size": size}, "text": text_}


def text(value: Any) -> str:
    """Untrusted text made safe for a figure's title, label or annotation."""
    return html.escape(str(value), quote=True)


def axis_title(channel: str, axis: Mapping[str, Any]) -> str:
    label = axis.get("label") or ""
    return text(f"{label.upper()} ({channel})" if label else channel)


def _ticks(axis: Mapping[str, Any]) -> dict[str, Any]:
    """Tick positions at round linear values on a Logicle axis (as FlowJo labels it)."""
    params = axis.get("transform") or {}
    if params.get("transform") != "logicle":
        return {}
    values = [-1000.0, 0.0, 1000.0, 10000.0, 100000.0]  # 10^2 would crowd 0 on a Logicle axis
    values = [v for v in values if v < params["T"]]
    # five values: solved exactly, instead of building logicle()'s lookup table for this axis (15 ms)
    positions = _logicle_exact(np.asarray(values), _logicle_constants(float(params["T"]), float(params["W"]),
                                                                      float(params["M"]), float(params["A"])))
    lo, hi = axis["range"]
    keep = [(float(p), v) for p, v in zip(positions, values) if lo <= p <= hi]
    labels = {0.0: "0", 100.0: "10²", 1000.0: "10³", 10000.0: "10⁴", 100000.0: "10⁵", -1000.0: "-10³"}
    return {"tickvals": [p for p, _ in keep], "ticktext": [labels[v] for _, v in keep]}


def _centres(span: Sequence[float], bins: int) -> np.ndarray:
    lo, hi = span
    return (lo + (np.arange(bins) + 0.5) * (hi - lo) / bins).astype(np.float32)


def gate_figure(view: Mapping[str, Any], axes: Mapping[str, Mapping[str, Any]], size: int = 300) -> Figure:
    """One gate: its parent's events as a density heatmap with the gate drawn on top.

    The density is ``log1p(count)`` scaled to 0-255 (uint8, so a page stays small); the title
    gives the population, its % of parent and the events in and out.
    """
    counts = np.asarray(view["counts"], dtype=np.float64)
    bins = counts.shape[0]
    ax, ay = axes[view["x"]], axes[view["y"]]
    scaled = np.log1p(counts)
    top = scaled.max() or 1.0
    z = np.round(255.0 * scaled / top).astype(np.uint8)
    data = [{"colorscale": DENSITY_SCALE, "hovertemplate": "x %{x:.3g}<br>y %{y:.3g}<extra></extra>",
             "showscale": False, "x": _typed(_centres(ax["range"], bins)), "y": _typed(_centres(ay["range"], bins)),
             "z": _typed(z), "zmax": 255, "zmin": 0, "type": "heatmap"}]
    shapes, annotations = _gate_shapes(view, ax, ay)
    if view.get("shape") == "ellipse":
        outline = np.asarray(view["outline"])
        data.append({"hoverinfo": "skip", "line": {"color": GATE_COLOUR, "width": 2}, "mode": "lines",
                     "showlegend": False, "x": _typed(outline[0]), "y": _typed(outline[1]), "type": "scatter"})
    pct = view.get("pct_parent")
    title = (f"<b>{text(view['population'])}</b> {pct:.2f}% of {text(view['parent'])}"
             f"<br><span style='font-size:10px'>{view['events_out']:,} of {view['events_in']:,} events</span>")
    layout = {"template": TEMPLATE, "title": _title(title, 12), "margin": {"t": 48}, "width": size, "height": size + 20}
    if shapes:
        layout["shapes"] = shapes
    if annotations:
        layout["annotations"] = annotations
    layout["xaxis"] = {"title": {"text": axis_title(view["x"], ax)}, "range": list(ax["range"]), **_ticks(ax)}
    layout["yaxis"] = {"title": {"text": axis_title(view["y"], ay)}, "range": list(ay["range"]), **_ticks(ay)}
    return {"data": data, "layout": layout}


def _gate_shapes(view: Mapping[str, Any], ax: Mapping[str, Any], ay: Mapping[str, Any]) -> tuple[list, list]:
    line = {"color": GATE_COLOUR, "width": 2}
    shapes: list[dict] = []
    annotations: list[dict] = []
    if view.get("shape") == "ratio":
        x0, x1 = ax["range"]
        r = float(view["ratio"])
        shapes.append({"line": line, "type": "line", "x0": x0, "x1": x1, "y0": r * x0, "y1": r * x1})
        annotations.append({"font": {"color": GATE_COLOUR, "size": 10}, "showarrow": False,
                            "text": f"FSC-H/FSC-A ≥ {r:.3f}", "x": x1, "xanchor": "right", "y": r * x1,
                            "yanchor": "bottom"})
        return shapes, annotations
    if view.get("shape") != "cuts":
        return shapes, annotations
    region = {"x0": ax["range"][0], "x1": ax["range"][1], "y0": ay["range"][0], "y1": ay["range"][1]}
    for cut in view["cuts"]:
        a = cut["axis"]
        value = cut["value"]
        if a == "x":
            shapes.append({"line": line, "type": "line", "x0": value, "x1": value, "y0": 0, "y1": 1, "yref": "paper"})
            region["x0" if cut["side"] == "above" else "x1"] = value
        else:
            shapes.append({"line": line, "type": "line", "x0": 0, "x1": 1, "xref": "paper", "y0": value, "y1": value})
            region["y0" if cut["side"] == "above" else "y1"] = value
    shapes.append({"fillcolor": GATE_COLOUR, "line": {"width": 0}, "opacity": 0.08, "type": "rect", **region})
    return shapes, annotations


def threshold_figure(th: Mapping[str, Any], axes: Mapping[str, Mapping[str, Any]], size: int = 300) -> Figure:
    """A threshold on the histogram of the events it was chosen on, labelled with the method
    that chose it (and the method asked for, when a fallback decided)."""
    counts = np.asarray(th["counts"], dtype=np.float32)
    edges = np.asarray(th["edges"], dtype=np.float32)
    axis = axes[th["channel"]]
    method = th["method"] + (f" (fallback from {th['fallback']})" if th.get("fallback") else "")
    colour = METHOD_COLOUR.get(th["method"], "#333333")
    bar = {"hovertemplate": "%{x:.3g}: %{y} events<extra></extra>", "marker": {"color": "#8796b8", "line": {"width": 0}},
           "width": float(edges[1] - edges[0]), "x": _typed((edges[:-1] + edges[1:]) / 2), "y": _typed(counts),
           "type": "bar"}
    title = (f"<b>{text(th['threshold'])}</b> on {text(th['on'])}: {th['value_raw']:.4g}"
             f"<br><span style='font-size:10px;color:{colour}'>{text(method)}, confidence "
             f"{th['confidence']:.2f}</span>")
    layout = {"template": TEMPLATE, "shapes": [_vline(th["value"], {"color": colour, "dash": "dash", "width": 2})],
              "title": _title(title, 12), "margin": {"t": 48}, "width": size, "height": size * 0.75, "bargap": 0,
              "xaxis": {"title": {"text": axis_title(th["channel"], axis)}, "range": list(axis["range"]), **_ticks(axis)},
              "yaxis": {"title": {"text": "events"}}}
    return {"data": [bar], "layout": layout}


# the axes of plotly's make_subplots(rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
# row_heights=[0.35, 0.65]) for two rows, and of one row
_TIME_AXES = {
    1: {"xaxis": {"anchor": "y", "domain": [0.0, 1.0]}, "yaxis": {"anchor": "x", "domain": [0.0, 1.0]}},
    2: {"xaxis": {"anchor": "y", "domain": [0.0, 1.0], "matches": "x2", "showticklabels": False},
        "yaxis": {"anchor": "x", "domain": [0.671, 1.0]}, "xaxis2": {"anchor": "y2", "domain": [0.0, 1.0]},
        "yaxis2": {"anchor": "x2", "domain": [0.0, 0.611]}},
}


def time_figure(qc: Mapping[str, Any], labels: Mapping[str, str] | None = None, width: int = 920) -> Figure | None:
    """Event rate and each population's mean signal against acquisition time, removed bins shaded."""
    record = qc.get("time") or {}
    if "edges" not in record:
        return None
    labels = labels or {}
    edges = np.asarray(record["edges"], dtype=np.float64)
    centres = _typed((edges[:-1] + edges[1:]) / 2)
    signals = record.get("signals", {})
    rows = 1 + (1 if signals else 0)
    data = [{"line": {"color": "#333", "width": 1.5}, "mode": "lines", "name": "event rate", "x": centres,
             "y": _typed(np.asarray(record["rate"], dtype=np.float32)), "type": "scatter", "xaxis": "x", "yaxis": "y"}]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    last = f"{rows}" if rows > 1 else ""  # the bottom row's axes: x2/y2 of two rows
    for i, (channel, entry) in enumerate(sorted(signals.items())):
        name = text(f"{labels.get(channel, '').upper() or channel} ({channel})" if labels.get(channel) else channel)
        for p, means in enumerate(entry["means"]):
            data.append({"legendgroup": channel, "line": {"color": palette[i % len(palette)], "width": 1},
                         "mode": "lines", "name": name if p == 0 else f"{name} pop {p + 1}", "showlegend": p == 0,
                         "x": centres, "y": _typed(np.asarray(means, dtype=np.float32)), "type": "scatter",
                         "xaxis": f"x{last}", "yaxis": f"y{last}"})
    unit = text(record.get("unit", ""))
    layout: dict[str, Any] = {"template": TEMPLATE,
                              **{k: dict(v) for k, v in _TIME_AXES[rows].items()}}
    layout["yaxis"]["title"] = {"text": f"events / {unit}"}
    if rows == 2:
        layout["yaxis2"]["title"] = {"text": "mean arcsinh signal"}
    layout[f"xaxis{last}"]["title"] = {"text": f"time ({unit})"}
    # removed runs shaded on every row that has a trace, as plotly's add_vrect(row="all") does
    drawn = [r for r in range(1, rows + 1) if any(t["yaxis"] == f"y{r if r > 1 else ''}" for t in data)]
    shapes, notes = [], []
    for run in record.get("removed_runs", []):
        label = "removed: " + text(", ".join(run["why"]))
        for r in drawn:
            xref, yref = f"x{r if r > 1 else ''}", f"y{r if r > 1 else ''} domain"
            shapes.append({"fillcolor": "#d62728", "line": {"width": 0}, "opacity": 0.18, "type": "rect",
                           "x0": run["start"], "x1": run["stop"], "xref": xref, "y0": 0, "y1": 1, "yref": yref})
        notes += [_note(label, run["start"], 1, "left", "top", f"x{r if r > 1 else ''}", f"y{r if r > 1 else ''} domain")
                  for r in drawn]
    if shapes:
        layout["shapes"] = shapes
        layout["annotations"] = notes
    layout.update({"legend": {"font": {"size": 10}}, "margin": {"t": 20}, "width": width,
                   "height": 420 if rows == 2 else 220})
    return {"data": data, "layout": layout}


def spillover_figure(compensation: Mapping[str, Any], size: int = 420) -> Figure | None:
    """The spillover matrix applied, as a heatmap titled with its source."""
    matrix = compensation.get("matrix")
    if not matrix:
        return None
    m = np.asarray(matrix, dtype=np.float32)
    names = [text(c) for c in compensation.get("matrix_channels") or compensation.get("channels") or []]
    off = m.copy()
    np.fill_diagonal(off, np.nan)
    heatmap = {"colorbar": {"title": {"side": "right", "text": "spill"}}, "colorscale": REDS,
               "hovertemplate": "%{y} into %{x}: %{z:.4f}<extra></extra>", "text": np.round(m, 3).astype(str),
               "textfont": {"size": 9}, "texttemplate": "%{text}", "x": names, "y": names, "z": _typed(off),
               "zmax": max(float(np.nanmax(off)) if np.isfinite(off).any() else 0.0, 0.01), "zmin": 0, "type": "heatmap"}
    layout = {"template": TEMPLATE,
              "title": _title("Spillover: " + text(compensation.get("source") or "none"), 12),
              "width": size + 80, "height": size, "yaxis": {"autorange": "reversed", "title": {"text": "from detector"}},
              "xaxis": {"title": {"text": "into detector"}, "tickangle": -45}}
    return {"data": [heatmap], "layout": layout}


def funnel_figure(steps: Sequence[tuple[str, int]], width: int = 460) -> Figure:
    """Events kept at each step, from the file to the Tregs."""
    funnel = {"marker": {"color": "#6b8fd6"}, "textinfo": "value+percent initial", "x": [int(k) for _, k in steps],
              "y": [text(s) for s, _ in steps], "type": "funnel"}
    return {"data": [funnel], "layout": {"template": TEMPLATE, "margin": {"l": 130, "t": 20}, "width": width,
                                         "height": 40 + 28 * len(steps)}}


# -- cohort figures ---------------------------------------------------------------------------------

SUBJECT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"]


def _with_shapes(layout: dict[str, Any], shapes: list, annotations: list) -> dict[str, Any]:
    """The layout with its shapes and their labels (left out when there are none, as plotly does)."""
    if shapes:
        layout["shapes"] = shapes
    if annotations:
        layout["annotations"] = annotations
    return layout


def trajectory_figure(long: "pd.DataFrame", population: str = "treg", dosing_days: Sequence[float] = (),
                      healthy_band: Sequence[float] | None = (4.0, 8.0), responders: "pd.DataFrame | None" = None,
                      width: int = 760) -> Figure:
    """Each subject's read-out against study day, Wilson intervals as error bars, IL-2 doses
    as ticks, the healthy reference band shaded; responders drawn solid, others dashed."""
    frame = long[long["population"] == population].sort_values(["subject", "day"])
    calls = dict(zip(responders["subject"], responders["responder"])) if responders is not None else {}
    shapes, annotations, data = [], [], []
    if healthy_band:
        shapes.append({"fillcolor": "#2ca02c", "line": {"width": 0}, "opacity": 0.10, "type": "rect", "x0": 0, "x1": 1,
                       "xref": "x domain", "y0": healthy_band[0], "y1": healthy_band[1], "yref": "y"})
        annotations.append(_note("healthy reference", 0, healthy_band[1], "left", "top", "x domain", "y"))
    for i, (subject, rows) in enumerate(frame.groupby("subject", sort=True)):
        colour = SUBJECT_COLOURS[i % len(SUBJECT_COLOURS)]
        low = (rows["value"] - rows["value_low"]).to_numpy(dtype=float)
        high = (rows["value_high"] - rows["value"]).to_numpy(dtype=float)
        dash = "solid" if calls.get(subject, True) else "dash"
        label = text(subject) + ("" if subject not in calls else (" (responder)" if calls[subject] else " (non-responder)"))
        data.append({
            "customdata": np.stack([rows["timepoint"].astype(str).map(text), rows["fold_change"].to_numpy(dtype=float)],
                                   axis=1),
            "error_y": {"array": _typed(high), "arrayminus": _typed(low), "symmetric": False, "thickness": 1,
                        "type": "data", "width": 3},
            "hovertemplate": f"{text(subject)} %{{customdata[0]}} (day %{{x}}): %{{y:.2f}}, fold change "
                             "%{customdata[1]:.2f}<extra></extra>",
            "line": {"color": colour, "dash": dash, "width": 1.8}, "mode": "lines+markers", "name": label,
            "x": _typed(rows["day"].to_numpy(dtype=float)), "y": _typed(rows["value"].to_numpy(dtype=float)),
            "type": "scatter"})
    shapes += [_vline(float(day), {"color": "#d62728", "dash": "dot", "width": 1}, opacity=0.6) for day in dosing_days]
    unit = text(frame["unit"].iloc[0]) if len(frame) else ""
    title = f"<b>{text(population)}</b> ({unit}) per subject" + (" · dotted lines: IL-2 doses" if len(dosing_days) else "")
    layout = _with_shapes({"template": TEMPLATE}, shapes, annotations)
    layout.update({"title": _title(title, 13), "legend": {"font": {"size": 10}}, "width": width, "height": 420,
                   "xaxis": {"title": {"text": "study day"}}, "yaxis": {"title": {"text": unit}, "rangemode": "tozero"}})
    return {"data": data, "layout": layout}


def slope_figure(long: "pd.DataFrame", timepoint: str, test: "Mapping[str, Any] | None" = None,
                 population: str = "treg", width: int = 380) -> Figure:
    """Baseline against one visit, one line per subject, with the paired test's result."""
    frame = long[long["population"] == population]
    at = frame[(frame["timepoint"].astype(str) == str(timepoint)) & ~frame["is_baseline"]]
    data = [{"hovertemplate": f"{text(row.subject)}: %{{y:.2f}}<extra></extra>",
             "line": {"color": SUBJECT_COLOURS[i % len(SUBJECT_COLOURS)]}, "mode": "lines+markers",
             "name": text(row.subject), "showlegend": False, "x": ["baseline", text(timepoint)],
             "y": [row.baseline, row.value], "type": "scatter"}
            for i, row in enumerate(at.sort_values("subject").itertuples())]
    title = f"<b>{text(population)}</b>: baseline vs {text(timepoint)}"
    if test is not None and test.get("p_value") is not None and np.isfinite(test.get("p_value", np.nan)):
        title += (f"<br><span style='font-size:10px'>Wilcoxon p = {test['p_value']:.3g} (n = {int(test['n'])}); "
                  f"Hodges-Lehmann {test['estimate']:+.2f} [{test['ci_low']:.2f}, {test['ci_high']:.2f}]</span>")
    unit = text(frame["unit"].iloc[0]) if len(frame) else ""
    return {"data": data, "layout": {"template": TEMPLATE, "title": _title(title, 12), "margin": {"t": 60},
                                     "width": width, "height": 420,
                                     "yaxis": {"title": {"text": unit}, "rangemode": "tozero"}}}


def waterfall_figure(responders: "pd.DataFrame", thresholds: Sequence[float] = (1.5, 2.0), width: int = 520) -> Figure:
    """Each subject's log2 fold change at the responder visit, sorted, coloured by the call."""
    frame = responders.assign(log2_fc=np.log2(responders["fold_change"].where(responders["fold_change"] > 0)))
    frame = frame.sort_values("log2_fc", ascending=False)
    colours = np.where(frame["responder"], "#1a7f37", "#9e9e9e")
    bar = {"customdata": _typed(np.stack([frame["fold_change"].to_numpy(dtype=float),
                                          frame["rcv"].to_numpy(dtype=float)], axis=1)),
           "hovertemplate": "%{x}: fold change %{customdata[0]:.2f} (RCV %{customdata[1]:.2f})<extra></extra>",
           "marker": {"color": colours}, "x": frame["subject"].map(text).to_numpy(),
           "y": _typed(frame["log2_fc"].to_numpy(dtype=float)), "type": "bar"}
    lines = [float(np.log2(t)) for t in thresholds]
    timepoint = text(frame["timepoint"].iloc[0]) if len(frame) else ""
    n = int(frame["responder"].sum())
    layout = _with_shapes({"template": TEMPLATE},
                          [_hline(y, {"color": "#d62728", "dash": "dash", "width": 1}) for y in lines],
                          [_note(f"{t:g}x", 1, y, "left", "middle", "x domain", "y") for t, y in zip(thresholds, lines)])
    layout.update({"title": _title(f"<b>log2 fold change at {timepoint}</b><br><span style='font-size:10px'>"
                                   f"{n} of {len(frame)} responders (green): fold change and change beyond RCV</span>", 12),
                   "margin": {"t": 60, "r": 40}, "width": width, "height": 420,
                   "yaxis": {"title": {"text": "log2 fold change"}}})
    return {"data": [bar], "layout": layout}


def estimates_figure(tests: "pd.DataFrame", population: str = "treg", test: str = "mixed_model",
                     width: int = 460) -> Figure | None:
    """A test's estimates per visit with their intervals (e.g. the mixed model's)."""
    rows = tests[(tests["population"] == population) & (tests["test"] == test)].dropna(subset=["estimate"])
    if rows.empty:
        return None
    points = {"customdata": _typed(rows[["p_value", "p_adjusted"]].to_numpy(dtype=float)),
              "error_x": {"array": _typed((rows["ci_high"] - rows["estimate"]).to_numpy(dtype=float)),
                          "arrayminus": _typed((rows["estimate"] - rows["ci_low"]).to_numpy(dtype=float)),
                          "symmetric": False, "type": "data"},
              "hovertemplate": "%{y}: %{x:.3f}, p %{customdata[0]:.3g} (adjusted %{customdata[1]:.3g})<extra></extra>",
              "marker": {"color": "#1f77b4", "size": 9}, "mode": "markers",
              "x": _typed(rows["estimate"].to_numpy(dtype=float)), "y": rows["timepoint"].map(text).to_numpy(),
              "type": "scatter"}
    scale = text(rows["estimate_scale"].iloc[0])
    layout = {"template": TEMPLATE, "shapes": [_vline(0.0, {"color": "#444", "width": 1})],
              "title": _title(f"<b>{text(population)}</b>: {text(test.replace('_', ' '))}, 95% CI", 12),
              "width": width, "height": 120 + 40 * len(rows), "xaxis": {"title": {"text": scale}},
              "yaxis": {"autorange": "reversed"}}
    return {"data": [points], "layout": layout}


def visit_medians_figure(long: "pd.DataFrame", populations: Sequence[str], title: str, width: int = 460) -> Figure | None:
    """Median over subjects per visit of one or more read-outs (e.g. CD25 on Treg and Tcon)."""
    frame = long[long["population"].isin(populations)]
    if frame.empty:
        return None
    data = []
    for i, (population, rows) in enumerate(frame.groupby("population", sort=False)):
        med = rows.groupby("day")["value"].median()
        data.append({"line": {"color": SUBJECT_COLOURS[i % len(SUBJECT_COLOURS)]}, "mode": "lines+markers",
                     "name": text(population), "x": _typed(med.index.to_numpy(dtype=float)),
                     "y": _typed(med.to_numpy(dtype=float)), "type": "scatter"})
    unit = text(frame["unit"].iloc[0])
    return {"data": data, "layout": {"template": TEMPLATE, "title": _title(f"<b>{text(title)}</b> (median of subjects)", 12),
                                     "legend": {"font": {"size": 10}}, "width": width, "height": 320,
                                     "xaxis": {"title": {"text": "study day"}}, "yaxis": {"title": {"text": unit}}}}
