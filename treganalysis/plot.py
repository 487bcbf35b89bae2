"""Plotly figures of one sample's gating and QC, from pre-binned views and the gate records.

Every figure draws numbers a gating job already computed (:mod:`treganalysis.views`, the
``qc`` record of ``gates.json``); none sees events. Text from files (channel names, markers,
sample names) is HTML-escaped before it goes into a figure, since plotly renders a few tags in
titles and labels.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from .transforms import _logicle_constants, _logicle_exact

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["estimates_figure", "funnel_figure", "gate_figure", "slope_figure", "spillover_figure", "threshold_figure",
           "time_figure", "trajectory_figure", "visit_medians_figure", "waterfall_figure"]

# A small template of our own: plotly's named templates add ~7 kB of JSON to every figure.
TEMPLATE = go.layout.Template(layout={
    "font": {"family": "Helvetica, Arial, sans-serif", "size": 11}, "paper_bgcolor": "white",
    "plot_bgcolor": "white", "margin": {"l": 55, "r": 10, "t": 40, "b": 45},
    "xaxis": {"showline": True, "linecolor": "#444", "ticks": "outside", "zeroline": False},
    "yaxis": {"showline": True, "linecolor": "#444", "ticks": "outside", "zeroline": False},
})
DENSITY_SCALE = [[0.0, "#ffffff"], [0.004, "#e8ecf8"], [0.25, "#6b8fd6"], [0.5, "#2fb38a"],
                 [0.75, "#f2c12e"], [1.0, "#d7301f"]]
GATE_COLOUR = "#d6006f"
METHOD_COLOUR = {"valley": "#1b7837", "tail": "#762a83", "quantile": "#b35806", "fmo": "#2166ac",
                 "median - k MAD": "#1b7837"}


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


def gate_figure(view: Mapping[str, Any], axes: Mapping[str, Mapping[str, Any]], size: int = 300) -> go.Figure:
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
    fig = go.Figure(go.Heatmap(
        z=z, x=_centres(ax["range"], bins), y=_centres(ay["range"], bins), colorscale=DENSITY_SCALE,
        zmin=0, zmax=255, showscale=False, hovertemplate="x %{x:.3g}<br>y %{y:.3g}<extra></extra>"))
    shapes, annotations = _gate_shapes(view, ax, ay)
    if view.get("shape") == "ellipse":
        outline = np.asarray(view["outline"])
        fig.add_trace(go.Scatter(x=outline[0], y=outline[1], mode="lines", line={"color": GATE_COLOUR, "width": 2},
                                 hoverinfo="skip", showlegend=False))
    pct = view.get("pct_parent")
    title = (f"<b>{text(view['population'])}</b> {pct:.2f}% of {text(view['parent'])}"
             f"<br><span style='font-size:10px'>{view['events_out']:,} of {view['events_in']:,} events</span>")
    fig.update_layout(template=TEMPLATE, width=size, height=size + 20, title={"text": title, "font": {"size": 12}},
                      shapes=shapes, annotations=annotations, margin={"t": 48})
    fig.update_xaxes(title=axis_title(view["x"], ax), range=list(ax["range"]), **_ticks(ax))
    fig.update_yaxes(title=axis_title(view["y"], ay), range=list(ay["range"]), **_ticks(ay))
    return fig


def _gate_shapes(view: Mapping[str, Any], ax: Mapping[str, Any], ay: Mapping[str, Any]) -> tuple[list, list]:
    line = {"color": GATE_COLOUR, "width": 2}
    shapes: list[dict] = []
    annotations: list[dict] = []
    if view.get("shape") == "ratio":
        x0, x1 = ax["range"]
        r = float(view["ratio"])
        shapes.append({"type": "line", "x0": x0, "y0": r * x0, "x1": x1, "y1": r * x1, "line": line})
        annotations.append({"x": x1, "y": r * x1, "text": f"FSC-H/FSC-A ≥ {r:.3f}", "showarrow": False,
                            "xanchor": "right", "yanchor": "bottom", "font": {"color": GATE_COLOUR, "size": 10}})
        return shapes, annotations
    if view.get("shape") != "cuts":
        return shapes, annotations
    region = {"x0": ax["range"][0], "x1": ax["range"][1], "y0": ay["range"][0], "y1": ay["range"][1]}
    for cut in view["cuts"]:
        a = cut["axis"]
        value = cut["value"]
        if a == "x":
            shapes.append({"type": "line", "x0": value, "x1": value, "yref": "paper", "y0": 0, "y1": 1, "line": line})
            region["x0" if cut["side"] == "above" else "x1"] = value
        else:
            shapes.append({"type": "line", "y0": value, "y1": value, "xref": "paper", "x0": 0, "x1": 1, "line": line})
            region["y0" if cut["side"] == "above" else "y1"] = value
    shapes.append({"type": "rect", **region, "line": {"width": 0}, "fillcolor": GATE_COLOUR, "opacity": 0.08})
    return shapes, annotations


def threshold_figure(th: Mapping[str, Any], axes: Mapping[str, Mapping[str, Any]], size: int = 300) -> go.Figure:
    """A threshold on the histogram of the events it was chosen on, labelled with the method
    that chose it (and the method asked for, when a fallback decided)."""
    counts = np.asarray(th["counts"], dtype=np.float32)
    edges = np.asarray(th["edges"], dtype=np.float32)
    axis = axes[th["channel"]]
    method = th["method"] + (f" (fallback from {th['fallback']})" if th.get("fallback") else "")
    colour = METHOD_COLOUR.get(th["method"], "#333333")
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, marker={"color": "#8796b8", "line": {"width": 0}},
                           width=float(edges[1] - edges[0]), hovertemplate="%{x:.3g}: %{y} events<extra></extra>"))
    fig.add_vline(x=th["value"], line={"color": colour, "width": 2, "dash": "dash"})
    title = (f"<b>{text(th['threshold'])}</b> on {text(th['on'])}: {th['value_raw']:.4g}"
             f"<br><span style='font-size:10px;color:{colour}'>{text(method)}, confidence "
             f"{th['confidence']:.2f}</span>")
    fig.update_layout(template=TEMPLATE, width=size, height=size * 0.75, bargap=0,
                      title={"text": title, "font": {"size": 12}}, margin={"t": 48})
    fig.update_xaxes(title=axis_title(th["channel"], axis), range=list(axis["range"]), **_ticks(axis))
    fig.update_yaxes(title="events")
    return fig


def time_figure(qc: Mapping[str, Any], labels: Mapping[str, str] | None = None, width: int = 920) -> go.Figure | None:
    """Event rate and each population's mean signal against acquisition time, removed bins shaded."""
    record = qc.get("time") or {}
    if "edges" not in record:
        return None
    labels = labels or {}
    edges = np.asarray(record["edges"], dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    signals = record.get("signals", {})
    rows = 1 + (1 if signals else 0)
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.35, 0.65][:rows] if rows == 2 else [1.0])
    fig.add_trace(go.Scatter(x=centres, y=np.asarray(record["rate"], dtype=np.float32), mode="lines",
                             name="event rate", line={"color": "#333", "width": 1.5}), row=1, col=1)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    for i, (channel, entry) in enumerate(sorted(signals.items())):
        name = text(f"{labels.get(channel, '').upper() or channel} ({channel})" if labels.get(channel) else channel)
        for p, means in enumerate(entry["means"]):
            fig.add_trace(go.Scatter(x=centres, y=np.asarray(means, dtype=np.float32), mode="lines",
                                     name=name if p == 0 else f"{name} pop {p + 1}", legendgroup=channel,
                                     showlegend=p == 0, line={"color": palette[i % len(palette)], "width": 1}),
                          row=rows, col=1)
    for run in record.get("removed_runs", []):
        fig.add_vrect(x0=run["start"], x1=run["stop"], fillcolor="#d62728", opacity=0.18, line_width=0,
                      annotation_text="removed: " + text(", ".join(run["why"])), annotation_position="top left",
                      annotation_font_size=10)
    unit = text(record.get("unit", ""))
    fig.update_layout(template=TEMPLATE, width=width, height=420 if rows == 2 else 220,
                      legend={"font": {"size": 10}}, margin={"t": 20})
    fig.update_yaxes(title_text=f"events / {unit}", row=1, col=1)
    if rows == 2:
        fig.update_yaxes(title_text="mean arcsinh signal", row=2, col=1)
    fig.update_xaxes(title_text=f"time ({unit})", row=rows, col=1)
    return fig


def spillover_figure(compensation: Mapping[str, Any], size: int = 420) -> go.Figure | None:
    """The spillover matrix applied, as a heatmap titled with its source."""
    matrix = compensation.get("matrix")
    if not matrix:
        return None
    m = np.asarray(matrix, dtype=np.float32)
    names = [text(c) for c in compensation.get("matrix_channels") or compensation.get("channels") or []]
    off = m.copy()
    np.fill_diagonal(off, np.nan)
    fig = go.Figure(go.Heatmap(z=off, x=names, y=names, colorscale="Reds", zmin=0,
                               zmax=max(float(np.nanmax(off)) if np.isfinite(off).any() else 0.0, 0.01),
                               text=np.round(m, 3).astype(str), texttemplate="%{text}", textfont={"size": 9},
                               hovertemplate="%{y} into %{x}: %{z:.4f}<extra></extra>",
                               colorbar={"title": {"text": "spill", "side": "right"}}))
    fig.update_layout(template=TEMPLATE, width=size + 80, height=size,
                      title={"text": "Spillover: " + text(compensation.get("source") or "none"), "font": {"size": 12}})
    fig.update_yaxes(autorange="reversed", title="from detector")
    fig.update_xaxes(title="into detector", tickangle=-45)
    return fig


def funnel_figure(steps: Sequence[tuple[str, int]], width: int = 460) -> go.Figure:
    """Events kept at each step, from the file to the Tregs."""
    fig = go.Figure(go.Funnel(y=[text(s) for s, _ in steps], x=[int(k) for _, k in steps],
                              textinfo="value+percent initial", marker={"color": "#6b8fd6"}))
    fig.update_layout(template=TEMPLATE, width=width, height=40 + 28 * len(steps), margin={"l": 130, "t": 20})
    return fig


# -- cohort figures ---------------------------------------------------------------------------------

SUBJECT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"]


def trajectory_figure(long: "pd.DataFrame", population: str = "treg", dosing_days: Sequence[float] = (),
                      healthy_band: Sequence[float] | None = (4.0, 8.0), responders: "pd.DataFrame | None" = None,
                      width: int = 760) -> go.Figure:
    """Each subject's read-out against study day, Wilson intervals as error bars, IL-2 doses
    as ticks, the healthy reference band shaded; responders drawn solid, others dashed."""
    frame = long[long["population"] == population].sort_values(["subject", "day"])
    calls = dict(zip(responders["subject"], responders["responder"])) if responders is not None else {}
    fig = go.Figure()
    if healthy_band:
        fig.add_hrect(y0=healthy_band[0], y1=healthy_band[1], fillcolor="#2ca02c", opacity=0.10, line_width=0,
                      annotation_text="healthy reference", annotation_position="top left", annotation_font_size=10)
    for i, (subject, rows) in enumerate(frame.groupby("subject", sort=True)):
        colour = SUBJECT_COLOURS[i % len(SUBJECT_COLOURS)]
        low = (rows["value"] - rows["value_low"]).to_numpy(dtype=float)
        high = (rows["value_high"] - rows["value"]).to_numpy(dtype=float)
        dash = "solid" if calls.get(subject, True) else "dash"
        label = text(subject) + ("" if subject not in calls else (" (responder)" if calls[subject] else " (non-responder)"))
        fig.add_trace(go.Scatter(
            x=rows["day"].to_numpy(dtype=float), y=rows["value"].to_numpy(dtype=float), mode="lines+markers",
            name=label, line={"color": colour, "dash": dash, "width": 1.8},
            error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low, "thickness": 1, "width": 3},
            customdata=np.stack([rows["timepoint"].astype(str).map(text), rows["fold_change"].to_numpy(dtype=float)], axis=1),
            hovertemplate=f"{text(subject)} %{{customdata[0]}} (day %{{x}}): %{{y:.2f}}, fold change %{{customdata[1]:.2f}}"
                          "<extra></extra>"))
    for day in dosing_days:
        fig.add_vline(x=float(day), line={"color": "#d62728", "width": 1, "dash": "dot"}, opacity=0.6)
    unit = text(frame["unit"].iloc[0]) if len(frame) else ""
    title = f"<b>{text(population)}</b> ({unit}) per subject" + (" · dotted lines: IL-2 doses" if len(dosing_days) else "")
    fig.update_layout(template=TEMPLATE, width=width, height=420, title={"text": title, "font": {"size": 13}},
                      legend={"font": {"size": 10}})
    fig.update_xaxes(title="study day")
    fig.update_yaxes(title=unit, rangemode="tozero")
    return fig


def slope_figure(long: "pd.DataFrame", timepoint: str, test: "Mapping[str, Any] | None" = None,
                 population: str = "treg", width: int = 380) -> go.Figure:
    """Baseline against one visit, one line per subject, with the paired test's result."""
    frame = long[long["population"] == population]
    at = frame[(frame["timepoint"].astype(str) == str(timepoint)) & ~frame["is_baseline"]]
    fig = go.Figure()
    for i, row in enumerate(at.sort_values("subject").itertuples()):
        fig.add_trace(go.Scatter(x=["baseline", text(timepoint)], y=[row.baseline, row.value], mode="lines+markers",
                                 name=text(row.subject), line={"color": SUBJECT_COLOURS[i % len(SUBJECT_COLOURS)]},
                                 showlegend=False, hovertemplate=f"{text(row.subject)}: %{{y:.2f}}<extra></extra>"))
    title = f"<b>{text(population)}</b>: baseline vs {text(timepoint)}"
    if test is not None and test.get("p_value") is not None and np.isfinite(test.get("p_value", np.nan)):
        title += (f"<br><span style='font-size:10px'>Wilcoxon p = {test['p_value']:.3g} (n = {int(test['n'])}); "
                  f"Hodges-Lehmann {test['estimate']:+.2f} [{test['ci_low']:.2f}, {test['ci_high']:.2f}]</span>")
    unit = text(frame["unit"].iloc[0]) if len(frame) else ""
    fig.update_layout(template=TEMPLATE, width=width, height=420, title={"text": title, "font": {"size": 12}},
                      margin={"t": 60})
    fig.update_yaxes(title=unit, rangemode="tozero")
    return fig


def waterfall_figure(responders: "pd.DataFrame", thresholds: Sequence[float] = (1.5, 2.0), width: int = 520) -> go.Figure:
    """Each subject's log2 fold change at the responder visit, sorted, coloured by the call."""
    frame = responders.assign(log2_fc=np.log2(responders["fold_change"].where(responders["fold_change"] > 0)))
    frame = frame.sort_values("log2_fc", ascending=False)
    colours = np.where(frame["responder"], "#1a7f37", "#9e9e9e")
    fig = go.Figure(go.Bar(x=frame["subject"].map(text), y=frame["log2_fc"].to_numpy(dtype=float),
                           marker={"color": colours},
                           customdata=np.stack([frame["fold_change"].to_numpy(dtype=float),
                                                frame["rcv"].to_numpy(dtype=float)], axis=1),
                           hovertemplate="%{x}: fold change %{customdata[0]:.2f} (RCV %{customdata[1]:.2f})<extra></extra>"))
    for t in thresholds:
        fig.add_hline(y=float(np.log2(t)), line={"color": "#d62728", "dash": "dash", "width": 1},
                      annotation_text=f"{t:g}x", annotation_position="right", annotation_font_size=10)
    timepoint = text(frame["timepoint"].iloc[0]) if len(frame) else ""
    n = int(frame["responder"].sum())
    fig.update_layout(template=TEMPLATE, width=width, height=420,
                      title={"text": f"<b>log2 fold change at {timepoint}</b><br><span style='font-size:10px'>"
                                     f"{n} of {len(frame)} responders (green): fold change and change beyond RCV</span>",
                             "font": {"size": 12}}, margin={"t": 60, "r": 40})
    fig.update_yaxes(title="log2 fold change")
    return fig


def estimates_figure(tests: "pd.DataFrame", population: str = "treg", test: str = "mixed_model",
                     width: int = 460) -> go.Figure | None:
    """A test's estimates per visit with their intervals (e.g. the mixed model's)."""
    rows = tests[(tests["population"] == population) & (tests["test"] == test)].dropna(subset=["estimate"])
    if rows.empty:
        return None
    fig = go.Figure(go.Scatter(
        x=rows["estimate"].to_numpy(dtype=float), y=rows["timepoint"].map(text), mode="markers",
        marker={"size": 9, "color": "#1f77b4"},
        error_x={"type": "data", "symmetric": False,
                 "array": (rows["ci_high"] - rows["estimate"]).to_numpy(dtype=float),
                 "arrayminus": (rows["estimate"] - rows["ci_low"]).to_numpy(dtype=float)},
        customdata=rows[["p_value", "p_adjusted"]].to_numpy(dtype=float),
        hovertemplate="%{y}: %{x:.3f}, p %{customdata[0]:.3g} (adjusted %{customdata[1]:.3g})<extra></extra>"))
    fig.add_vline(x=0.0, line={"color": "#444", "width": 1})
    scale = text(rows["estimate_scale"].iloc[0])
    fig.update_layout(template=TEMPLATE, width=width, height=120 + 40 * len(rows),
                      title={"text": f"<b>{text(population)}</b>: {text(test.replace('_', ' '))}, 95% CI", "font": {"size": 12}})
    fig.update_xaxes(title=scale)
    fig.update_yaxes(autorange="reversed")
    return fig


def visit_medians_figure(long: "pd.DataFrame", populations: Sequence[str], title: str, width: int = 460) -> go.Figure | None:
    """Median over subjects per visit of one or more read-outs (e.g. CD25 on Treg and Tcon)."""
    frame = long[long["population"].isin(populations)]
    if frame.empty:
        return None
    fig = go.Figure()
    for i, (population, rows) in enumerate(frame.groupby("population", sort=False)):
        med = rows.groupby("day")["value"].median()
        fig.add_trace(go.Scatter(x=med.index.to_numpy(dtype=float), y=med.to_numpy(dtype=float), mode="lines+markers",
                                 name=text(population), line={"color": SUBJECT_COLOURS[i % len(SUBJECT_COLOURS)]}))
    unit = text(frame["unit"].iloc[0])
    fig.update_layout(template=TEMPLATE, width=width, height=320, title={"text": f"<b>{text(title)}</b> (median of subjects)",
                                                                         "font": {"size": 12}}, legend={"font": {"size": 10}})
    fig.update_xaxes(title="study day")
    fig.update_yaxes(title=unit)
    return fig
