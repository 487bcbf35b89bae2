"""HTML QC pages: one per sample, and the cohort index that links them.

A page is built from what a gating job wrote (``gates.json``, ``views.npz``,
``populations.tsv``) and loads one shared ``plotly.min.js`` from the report folder, so it works
offline and stays small. Every piece of text that comes from a file or a sample sheet is
escaped (:func:`html.escape`) before it is written.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._files import read_records_tsv, write_bytes_atomic
from .errors import TregAnalysisError
from .views import load_views

__all__ = ["DEFAULTS", "index_page", "sample_page", "write_index", "write_plotly_js", "write_report",
           "write_sample_pages"]

DEFAULTS: dict[str, Any] = {
    "dosing_days": [],  # study days of IL-2 doses, marked on the trajectories
    "healthy_band": [4.0, 8.0],  # healthy Treg % of CD4 shaded on the trajectories (domain.md 5.4 [U])
    "population": "treg",  # the headline read-out
}

PLOTLY_JS = "plotly.min.js"
FUNNEL = ("cells", "singlets", "lymphocytes", "live", "cd3", "cd4", "treg")
STATUS_COLOUR = {"pass": "#1a7f37", "warn": "#b26b00", "fail": "#c62828", "failed": "#c62828"}

CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:bold;font-size:13px}
.strip{display:flex;flex-wrap:wrap;gap:6px}.strip>div{border:1px solid #eee}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.muted{color:#666;font-size:12px}
ul.reasons{margin:4px 0 0 0;font-size:13px}code{font-size:12px}
"""


def _e(value: Any) -> str:
    """Escape untrusted text for HTML (element content and quoted attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def write_plotly_js(folder: str | Path) -> Path:
    """Write the plotly.js bundle that ships with the plotly package beside the pages."""
    from plotly.offline import get_plotlyjs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(folder / PLOTLY_JS, get_plotlyjs().encode("utf-8"))


def _figure_html(fig: dict[str, Any], div_id: str, toolbar: bool = True) -> str:
    import plotly.io as pio

    # the small strip plots keep drag-to-zoom and double-click-to-reset without a toolbar over the title;
    # the figures of treganalysis.plot are plotly's own dicts already (no validation: 20 ms a figure)
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, validate=False,
                       config={"displaylogo": False, "displayModeBar": toolbar,
                               "toImageButtonOptions": {"format": "svg"}})


def _page(title: str, body: str, js: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style>"
            f"<script src=\"{_e(js)}\"></script></head><body>\n{body}\n</body></html>\n")


def _table(frame: pd.DataFrame, left: Sequence[str] = (), formats: Mapping[str, str] | None = None,
           links: Mapping[str, Mapping[Any, str]] | None = None) -> str:
    """An HTML table with every cell escaped; ``links`` maps a column's values to hrefs."""
    formats, links = formats or {}, links or {}
    head = "".join(f"<th class=\"{'l' if c in left else ''}\">{_e(c)}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values):
            if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
                shown = ""
            elif column in formats and isinstance(value, (int, float)):
                shown = format(value, formats[column])
            else:
                shown = str(value)
            content = _e(shown)
            if column in links and value in links[column]:
                content = f"<a href=\"{_e(links[column][value])}\">{content}</a>"
            if column == "qc_status" or column == "status":
                colour = STATUS_COLOUR.get(str(value))
                content = f"<b style=\"color:{colour}\">{content}</b>" if colour else content
            cells.append(f"<td class=\"{'l' if column in left else ''}\">{content}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _badge(status: str) -> str:
    return f"<span class=\"badge\" style=\"background:{STATUS_COLOUR.get(status, '#555')}\">{_e(status)}</span>"


def sample_page(folder: str | Path, sample_id: str | None = None, info: Mapping[str, Any] | None = None,
                js: str = f"../{PLOTLY_JS}") -> str:
    """The QC page of one gated sample, as HTML text.

    Parameters
    ----------
    folder : path
        The sample's results (``gates.json``, ``populations.tsv``, ``views.npz``), as written by
        ``treganalysis gate``.
    sample_id : str, optional
        The name to show (default: the folder's name).
    info : mapping, optional
        Sample-sheet values to show (subject, timepoint, day, ...).
    js : str
        Relative path of ``plotly.min.js`` from the page.

    Returns
    -------
    str
    """
    from .plot import funnel_figure, gate_figure, spillover_figure, threshold_figure, time_figure

    folder = Path(folder)
    sample_id = sample_id or folder.name
    try:
        record = json.loads((folder / "gates.json").read_text(encoding="utf-8"))
        populations = pd.read_csv(folder / "populations.tsv", sep="\t")
    except (OSError, ValueError) as exc:
        raise TregAnalysisError(f"{folder}: cannot read the gating results ({exc}); run treganalysis gate first") from None
    views_path = folder / "views.npz"
    views = load_views(views_path) if views_path.exists() else {"axes": {}, "gates": [], "thresholds": []}
    parts = ["<p class=\"muted\"><a href=\"../index.html\">cohort index</a></p>"]
    qc = record.get("qc") or {}
    status = "failed" if record.get("error") else qc.get("status", "not run")
    parts.append(f"<h1>{_e(sample_id)} {_badge(status)}</h1>")
    if info:
        parts.append("<p class=\"muted\">" + " &middot; ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in info.items()
                                                                 if v is not None and str(v) != "nan") + "</p>")
    reasons = [record["error"]] if record.get("error") else qc.get("reasons", [])
    if reasons:
        parts.append("<ul class=\"reasons\">" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    if record.get("error"):
        parts.append("<p>This sample could not be gated; nothing below was computed.</p>")
        return _page(f"{sample_id}: QC", "\n".join(parts), js)
    figures = 0

    def figure(fig, toolbar: bool = False) -> str:
        nonlocal figures
        figures += 1
        return f"<div>{_figure_html(fig, f'fig-{figures}', toolbar)}</div>"

    parts.append("<h2>Gating hierarchy</h2><div class=\"strip\">")
    parts += [figure(gate_figure(v, views["axes"])) for v in views["gates"]]
    parts.append("</div>")
    absent = [g for g in record.get("gates", []) if g.get("status") in ("absent", "na")]
    if absent:
        parts.append("<p class=\"muted\">Not gated: " + "; ".join(
            f"{_e(g['population'])} ({_e(g['status'])}: {_e(g.get('reason', ''))})" for g in absent) + "</p>")
    parts.append("<h2>Thresholds and the method that chose each</h2><div class=\"strip\">")
    parts += [figure(threshold_figure(t, views["axes"])) for t in views["thresholds"]]
    parts.append("</div>")
    parts.append("<h2>Acquisition QC</h2>")
    labels = {c: m for m, c in (record.get("panel") or {}).items() if c}
    time_fig = time_figure(qc, labels)
    if time_fig is not None:
        parts.append(figure(time_fig, toolbar=True))
    else:
        parts.append(f"<p>Time QC: {_e((qc.get('time') or {}).get('skipped', 'not run'))}</p>")
    parts.append("<div class=\"strip\">")
    parts.append(figure(funnel_figure(_funnel(record, populations))))
    spill = spillover_figure((record.get("provenance") or {}).get("compensation") or {})
    if spill is not None:
        parts.append(figure(spill, toolbar=True))
    parts.append("</div>")
    parts.append(_qc_tables(qc))
    parts.append("<h2>Populations</h2>")
    shown = [c for c in ("population", "parent", "status", "count", "parent_count", "pct_parent", "pct_parent_low",
                         "pct_parent_high", "pct_cd4", "pct_cd4_low", "pct_cd4_high") if c in populations]
    shown += [c for c in populations.columns if c.startswith("median_")]
    parts.append(_table(populations[shown], left=("population", "parent", "status"),
                        formats={c: ".2f" for c in shown if c.startswith("pct")} | {c: ".4g" for c in shown
                                                                                    if c.startswith("median_")}))
    parts.append("<h2>Provenance</h2>")
    parts.append(_provenance(record))
    return _page(f"{sample_id}: QC", "\n".join(parts), js)


def _funnel(record: Mapping[str, Any], populations: pd.DataFrame) -> list[tuple[str, int]]:
    events = ((record.get("qc") or {}).get("events") or {})
    margins = ((record.get("qc") or {}).get("margins") or {}).get("removed_events", 0)
    steps = []
    if events:
        steps.append(("in the file", int(events["total"])))
        steps.append(("not at a margin", int(events["total"]) - int(margins)))
        steps.append(("after time QC", int(events["kept"])))
    counts = populations.set_index("population")["count"] if "count" in populations else pd.Series(dtype=float)
    steps += [(name, int(counts[name])) for name in FUNNEL if name in counts.index and pd.notna(counts[name])]
    return steps


def _qc_tables(qc: Mapping[str, Any]) -> str:
    parts = []
    margins = (qc.get("margins") or {}).get("removed") or {}
    if margins:
        frame = pd.DataFrame({"channel": list(margins), "events at the ceiling": list(margins.values())})
        parts.append("<h3>Margin events ($PnR - 1)</h3>" + _table(frame, left=("channel",)))
    negative = (qc.get("compensation") or {}).get("negative") or {}
    if negative:
        frame = pd.DataFrame([{"channel": c, "spread of negatives": v["spread"], "limit": v["limit"],
                               "% below the limit": 100 * v["share"]} for c, v in negative.items()])
        source = (qc.get("compensation") or {}).get("source") or "none"
        parts.append(f"<h3>Compensation: {_e(source)}</h3>" + _table(
            frame, left=("channel",), formats={"spread of negatives": ".4g", "limit": ".4g", "% below the limit": ".2f"}))
    settings = qc.get("settings") or {}
    if settings:
        parts.append("<p class=\"muted\">QC settings: " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in settings.items())
                     + "</p>")
    return "\n".join(parts)


def _provenance(record: Mapping[str, Any]) -> str:
    prov = record.get("provenance") or {}
    comp = prov.get("compensation") or {}
    rows = [("file", prov.get("file")), ("SHA-256", prov.get("sha256")), ("instrument ($CYT)", prov.get("instrument")),
            ("acquired", prov.get("acquired")), ("treganalysis", prov.get("package_version")),
            ("config SHA-256", prov.get("config_sha256")), ("compensation", comp.get("source")),
            ("pooled gates", (prov.get("pooled") or {}).get("group"))]
    transforms = prov.get("transforms") or {}
    rows += [(f"transform {c}", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in p.items())) for c, p in transforms.items()]
    frame = pd.DataFrame([(k, "" if v is None else v) for k, v in rows], columns=["what", "value"])
    return _table(frame, left=("what", "value"))


def index_page(samples: pd.DataFrame, cohort: Mapping[str, pd.DataFrame] | None = None,
               settings: Mapping[str, Any] | None = None, js: str = PLOTLY_JS) -> str:
    """The cohort page: the Treg expansion (when statistics are given) and every sample's QC.

    Parameters
    ----------
    samples : DataFrame
        One row per sample: ``sample_id``, ``qc_status`` and any of ``subject``, ``timepoint``,
        ``day``, ``events``, ``cd4_events``, ``treg_events``, ``treg_pct_cd4``, ``reason``.
    cohort : mapping, optional
        ``longitudinal``, ``tests`` and ``responders`` tables (:func:`treganalysis.stats.run_stats`).
    settings : mapping, optional
        ``dosing_days``, ``healthy_band``, ``population`` (see ``DEFAULTS``).
    """
    cfg = {**DEFAULTS, **(settings or {})}
    links = {"sample_id": {s: f"samples/{s}.html" for s in samples["sample_id"]}}
    counts = samples["qc_status"].value_counts().to_dict() if "qc_status" in samples else {}
    summary = ", ".join(f"{_e(k)}: {v}" for k, v in sorted(counts.items()))
    parts = ["<h1>treganalysis: cohort report</h1>"]
    if cohort is not None and cohort["responders"].empty:
        parts.append("<p>No subject has a baseline and a later visit that could be analysed: no statistics.</p>")
    elif cohort is not None:
        parts.append(_cohort_section(cohort, cfg))
    parts.append(f"<h2>Samples and QC</h2><p>{len(samples)} samples ({summary}). Each sample's page shows every "
                 "gate on its data, the method behind each threshold and the acquisition QC.</p>")
    parts.append(_table(samples, left=("sample_id", "subject", "timepoint", "qc_status", "reason"),
                        formats={"treg_pct_cd4": ".2f", "day": "g"}, links=links))
    return _page("treganalysis cohort report", "\n".join(parts), js)


def _cohort_section(cohort: Mapping[str, pd.DataFrame], cfg: Mapping[str, Any]) -> str:
    from .plot import estimates_figure, slope_figure, trajectory_figure, visit_medians_figure, waterfall_figure

    long, tests, calls = cohort["longitudinal"], cohort["tests"], cohort["responders"]
    population = cfg["population"]
    figures = 0

    def figure(fig) -> str:
        nonlocal figures
        if fig is None:
            return ""
        figures += 1
        return f"<div>{_figure_html(fig, f'cohort-{figures}', toolbar=False)}</div>"

    timepoint = str(calls["timepoint"].iloc[0]) if len(calls) else None
    n_resp = int(calls["responder"].sum()) if len(calls) else 0
    at = long[(long["population"] == population) & ~long["is_baseline"] & (long["timepoint"].astype(str) == timepoint)]
    wilcoxon = tests[(tests["population"] == population) & (tests["test"] == "wilcoxon")
                     & (tests["timepoint"].astype(str) == timepoint)]
    test_row = wilcoxon.iloc[0].to_dict() if len(wilcoxon) else None
    headline = (f"<p>At <b>{_e(timepoint)}</b> the median fold change of {_e(population)} is "
                f"<b>{at['fold_change'].median():.2f}</b> over {at['subject'].nunique()} subjects; "
                f"<b>{n_resp}</b> of {len(calls)} are responders (fold change &ge; the threshold and beyond the "
                f"reference change value)")
    if test_row is not None and pd.notna(test_row.get("p_value")):
        headline += f"; Wilcoxon signed-rank p = {test_row['p_value']:.3g} (Holm {test_row['p_holm']:.3g})"
    headline += ".</p>"
    non = calls[~calls["responder"]]["subject"].tolist()
    if non:
        headline += "<p>Low or non-responders: " + ", ".join(f"<b>{_e(s)}</b>" for s in non) + "</p>"
    parts = ["<h2>Treg expansion</h2>", headline, "<div class=\"strip\">",
             figure(trajectory_figure(long, population, cfg.get("dosing_days") or (), cfg.get("healthy_band"), calls)),
             figure(slope_figure(long, timepoint, test_row, population)) if timepoint else "",
             figure(waterfall_figure(calls)), figure(estimates_figure(tests, population)),
             figure(visit_medians_figure(long, ["cd25_mfi_treg", "cd25_mfi_tcon"], "CD25 on Treg and Tcon")),
             figure(visit_medians_figure(long, ["treg_tcon_ratio"], "Treg/Tcon ratio")), "</div>"]
    parts.append("<h3>Responders</h3>" + _table(calls, left=("subject", "timepoint", "arm"),
                                                formats={"fold_change": ".2f", "rcv": ".3f", "cv_analytic": ".3f",
                                                         "value": ".2f", "baseline": ".2f"}))
    shown = tests[tests["population"] == population]
    parts.append(f"<h3>Tests of {_e(population)} (all read-outs in tests.tsv)</h3>" + _table(
        shown, left=("population", "timepoint", "test", "estimate_scale", "note"),
        formats={c: ".3g" for c in ("statistic", "p_value", "p_holm", "p_adjusted", "estimate", "ci_low", "ci_high")}))
    return "\n".join(parts)


def _population_rows(path: Path) -> dict[str, dict[str, str]]:
    """A population table's rows as text, by population (the csv module: 24 pages' summaries
    read this way take 5 ms, with pandas 0.2 s). A table pandas would not read as the cohort
    job does raises ValueError naming the problem."""
    columns, records = read_records_tsv(path)
    missing = [c for c in ("population", "count") if c not in columns]
    if missing:
        raise ValueError(f"{path.name} has no {' or '.join(missing)} column")
    rows: dict[str, dict[str, str]] = {}
    for row in records:
        if row["population"] in rows:
            raise ValueError(f"{path.name} lists population {row['population']!r} twice")
        rows[row["population"]] = row
    return rows


def _number(table: Mapping[str, Mapping[str, str]], population: str, column: str) -> float | None:
    """A cell as a number: None when the population or the column is absent, NaN when blank."""
    text = (table.get(population) or {}).get(column)
    if text is None:
        return None
    try:
        return float(text) if text.strip() else float("nan")
    except ValueError:
        raise ValueError(f"populations.tsv: {population} {column} {text!r} is not a number") from None


def _sample_summary(sample_id: str, folder: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"sample_id": sample_id, **{k: info.get(k) for k in ("subject", "timepoint", "day")
                                                       if k in info}}
    try:
        record = json.loads((folder / "gates.json").read_text(encoding="utf-8"))
        if record.get("error"):  # its table holds the failure, not counts
            return {**row, "qc_status": "failed", "reason": record["error"]}
        table = _population_rows(folder / "populations.tsv")
        counts = {name: _number(table, name, "count") for name in ("cd4", "treg")}
        treg_pct = _number(table, "treg", "pct_cd4")
    except (OSError, ValueError) as exc:
        return {**row, "qc_status": "failed", "reason": f"no results ({exc})"}
    qc = record.get("qc") or {}
    row["qc_status"] = qc.get("status", "")
    row["events"] = (qc.get("events") or {}).get("total")
    for name, count in counts.items():
        row[f"{name}_events"] = int(count) if count is not None and math.isfinite(count) else None
    row["treg_pct_cd4"] = treg_pct
    row["reason"] = "; ".join(qc.get("reasons", []))
    return row


def _sheet_samples(samples: Path, sheet: pd.DataFrame | None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The samples to report (the sheet's, in its order, else every gated folder) and each one's
    sheet values."""
    if sheet is not None and "sample_id" in sheet:
        ids = [str(s) for s in sheet["sample_id"]]
        infos = {str(r["sample_id"]): {k: v for k, v in r.items() if k not in ("sample_id", "fcs")}
                 for r in sheet.to_dict("records")}
    else:
        ids = sorted(p.name for p in samples.iterdir() if (p / "gates.json").exists()) if samples.is_dir() else []
        infos = {}
    return ids, infos


def _sample_html(samples: Path, sample_id: str, info: Mapping[str, Any] | None) -> str:
    """A sample's page, or a failed page when it has no results."""
    if (samples / sample_id / "gates.json").exists():
        return sample_page(samples / sample_id, sample_id, info)
    return _page(sample_id, f"<h1>{_e(sample_id)} {_badge('failed')}</h1><p>No results.</p>", f"../{PLOTLY_JS}")


def write_sample_pages(samples: str | Path, out: str | Path, sample_ids: Sequence[str] | None = None,
                       sheet: pd.DataFrame | None = None) -> list[Path]:
    """Write sample pages only: ``samples/{id}.html`` under ``out``, as :func:`write_report`
    draws them (no index, no ``plotly.min.js``: :func:`write_plotly_js`).

    The pages need no statistics: a workflow draws them this way in a job of their own, beside
    the statistics, and puts the site together from them and the index (:func:`write_index`);
    ``write_report(..., pages=out)`` copies them too, instead of drawing them again.

    Parameters
    ----------
    samples : path
        Folder with one results folder per sample (``results/samples``).
    out : path
        Folder of the pages (a report folder, or one that ``write_report`` copies from).
    sample_ids : sequence of str, optional
        The samples to draw (default: all, as :func:`write_report` chooses them).
    sheet : DataFrame, optional
        Sample sheet, for the pages' headers.

    Returns
    -------
    list of Path
        The pages written.
    """
    samples, out = Path(samples), Path(out)
    ids, infos = _sheet_samples(samples, sheet)
    if sample_ids is not None:
        unknown = [str(s) for s in sample_ids if sheet is not None and str(s) not in infos]
        if unknown:
            raise TregAnalysisError(f"not in the sample sheet: {', '.join(unknown)}")
        ids = [str(s) for s in sample_ids]
    if not ids:
        raise TregAnalysisError(f"{samples}: no gated samples to report (run treganalysis gate first)")
    (out / "samples").mkdir(parents=True, exist_ok=True)
    return [write_bytes_atomic(out / "samples" / f"{s}.html", _sample_html(samples, s, infos.get(s)).encode("utf-8"))
            for s in ids]


def _check_settings(settings: Mapping[str, Any] | None) -> None:
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise TregAnalysisError(f"report: unknown setting {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")


def _index_html(samples: Path, ids: Sequence[str], infos: Mapping[str, Mapping[str, Any]],
                stats: str | Path | None, settings: Mapping[str, Any] | None) -> str:
    summary = pd.DataFrame([_sample_summary(s, samples / s, infos.get(s, {})) for s in ids])
    for column in ("events", "cd4_events", "treg_events"):  # counts stay integers beside a failed sample's blanks
        if column in summary:
            summary[column] = pd.to_numeric(summary[column], errors="coerce").astype("Int64")
    cohort = None
    if stats is not None:
        try:
            cohort = {name: pd.read_csv(Path(stats) / f"{name}.tsv", sep="\t", dtype={"subject": str, "timepoint": str})
                      for name in ("longitudinal", "tests", "responders")}
        except (OSError, ValueError) as exc:
            raise TregAnalysisError(f"{stats}: cannot read the statistics tables ({exc}); run treganalysis stats first") from None
    return index_page(summary, cohort, settings)


def write_index(samples: str | Path, path: str | Path, sheet: pd.DataFrame | None = None,
                stats: str | Path | None = None, settings: Mapping[str, Any] | None = None) -> Path:
    """Write the cohort page alone: the ``index.html`` that :func:`write_report` writes.

    It links ``samples/{id}.html`` and loads ``plotly.min.js`` beside it, so it belongs at the
    root of a report folder. A workflow draws it in the statistics' job, whose tables and imports
    it shares, and assembles the site from it and the sample pages (:func:`write_sample_pages`).

    Parameters
    ----------
    samples : path
        Folder with one results folder per sample (``results/samples``).
    path : path
        The page to write (its folder must exist).
    sheet : DataFrame, optional
        Sample sheet (``sample_id`` and its columns): the samples listed, in its order.
    stats : path, optional
        Folder with ``longitudinal.tsv``, ``tests.tsv``, ``responders.tsv``: the page then
        shows the cohort's expansion.
    settings : mapping, optional
        ``dosing_days``, ``healthy_band``, ``population`` (``DEFAULTS``).

    Returns
    -------
    Path
        The page written.
    """
    samples = Path(samples)
    ids, infos = _sheet_samples(samples, sheet)
    if not ids:
        raise TregAnalysisError(f"{samples}: no gated samples to report (run treganalysis gate first)")
    _check_settings(settings)
    return write_bytes_atomic(path, _index_html(samples, ids, infos, stats, settings).encode("utf-8"))


def write_report(samples: str | Path, out: str | Path, sheet: pd.DataFrame | None = None,
                 stats: str | Path | None = None, settings: Mapping[str, Any] | None = None,
                 pages: str | Path | None = None) -> list[Path]:
    """Write the QC site: ``plotly.min.js``, ``samples/{id}.html`` per sample and ``index.html``.

    Parameters
    ----------
    samples : path
        Folder with one results folder per sample (``results/samples``).
    out : path
        The report folder (``results/report``).
    sheet : DataFrame, optional
        Sample sheet (``sample_id`` and its columns) for the pages' headers and the index.
    stats : path, optional
        Folder with ``longitudinal.tsv``, ``tests.tsv``, ``responders.tsv``: the index then
        shows the cohort's expansion.
    settings : mapping, optional
        The index's ``dosing_days``, ``healthy_band``, ``population`` (``DEFAULTS``).
    pages : path, optional
        A folder where :func:`write_sample_pages` wrote the sample pages (``samples/{id}.html``):
        they are copied instead of drawn again, and every sample's page must be there.

    Returns
    -------
    list of Path
        The pages written.
    """
    samples, out = Path(samples), Path(out)
    ids, infos = _sheet_samples(samples, sheet)
    if not ids:
        raise TregAnalysisError(f"{samples}: no gated samples to report (run treganalysis gate first)")
    _check_settings(settings)
    drawn = {}
    if pages is not None:
        for sample_id in ids:
            page = Path(pages) / "samples" / f"{sample_id}.html"
            try:
                drawn[sample_id] = page.read_bytes()
            except OSError as exc:
                raise TregAnalysisError(f"{page}: cannot read the sample's page ({exc.strerror}); draw it first "
                                        "(treganalysis report --sample)") from None
    (out / "samples").mkdir(parents=True, exist_ok=True)
    write_plotly_js(out)
    written = []
    for sample_id in ids:
        page = drawn[sample_id] if sample_id in drawn else _sample_html(samples, sample_id, infos.get(sample_id)).encode("utf-8")
        written.append(write_bytes_atomic(out / "samples" / f"{sample_id}.html", page))
    written.append(write_bytes_atomic(out / "index.html", _index_html(samples, ids, infos, stats, settings).encode("utf-8")))
    return written
