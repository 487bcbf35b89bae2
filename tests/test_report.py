"""The QC report without a browser: binned gate views (treganalysis.views), the pages
(treganalysis.report) and the escaping of untrusted text.

One simulated subject is gated once per module (``treganalysis gate``, in process), together
with a copy of a visit whose ``$CYT`` keyword is HTML markup and a truncated file gated with
``--record-failure``; the report is written once from a sample sheet whose subject is a
``<script>`` element. The rendering of the same pages in Chromium is checked by
tests/test_report_browser.py.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import treganalysis as ta
from treganalysis.cli import main
from treganalysis.errors import TregAnalysisError
from treganalysis.fcs import write_fcs
from treganalysis.report import PLOTLY_JS, write_index, write_report, write_sample_pages
from treganalysis.simulate import simulate_cohort
from treganalysis.views import BINS_1D, BINS_2D, bin2d, gate_views, load_views, save_views

CYT_MARKUP = "<img src=x onerror=alert(1)>"
SUBJECT_MARKUP = "<script>alert(1)</script>"
# a file name is untrusted text too: it reaches the page in the reason a file could not be read
BAD_NAME = "truncated.fcs" if os.name == "nt" else "<img src=y onerror=alert(2)>.fcs"
GOOD = ("P01_D0", "P01_D5")
MAX_PAGE_BYTES = 1_500_000


def escaped(markup: str) -> str:
    return markup.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def plant_cyt(source: Path, path: Path, cyt: str) -> Path:
    """A copy of an FCS file with ``$CYT`` replaced (events, channels, spillover and the
    keywords the QC reads are kept)."""
    sample = ta.read_fcs(source)
    keep = {k: sample.metadata[k] for k in ("$TIMESTEP", "$DATE", "$BTIM", "$ETIM") if sample.metadata.get(k)}
    return write_fcs(path, sample.events, sample.channels, sample.markers, ranges=sample.ranges,
                     spillover=sample.spillover, keywords={**keep, "$CYT": cyt})


def section(page: str, heading: str) -> str:
    """The HTML from ``<h2>heading</h2>`` to the next ``<h2>``."""
    start = page.index(f"<h2>{heading}")
    end = page.find("<h2>", start + 4)
    return page[start:end if end >= 0 else len(page)]


def unescape_json(text: str) -> str:
    """Plotly writes ``<``, ``>`` and ``/`` in a figure's JSON as ``\\u003c`` etc."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


# -- one gated cohort and its report per module -----------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    sim = root / "sim"
    simulate_cohort(sim, subjects=1, events=20_000, seed=5)
    results = root / "results"
    for sample_id in GOOD:
        assert main(["gate", str(sim / "fcs" / f"{sample_id}.fcs"), "--out", str(results / sample_id)]) == 0
    planted = plant_cyt(sim / "fcs" / "P01_D12.fcs", root / "planted.fcs", CYT_MARKUP)
    assert main(["gate", str(planted), "--out", str(results / "PLANTED")]) == 0
    bad = root / BAD_NAME
    bad.write_bytes((sim / "fcs" / "P01_D33.fcs").read_bytes()[:50_000])
    assert main(["gate", str(bad), "--record-failure", "--out", str(results / "BAD")]) == 0
    sheet = root / "sheet.tsv"
    rows = [("sample_id", "subject", "timepoint", "day", "fcs"),
            ("P01_D0", "P01", "D0", "0", "sim/fcs/P01_D0.fcs"),
            ("P01_D5", "P01", "D5", "5", "sim/fcs/P01_D5.fcs"),
            ("PLANTED", SUBJECT_MARKUP, "D12", "12", "planted.fcs"),
            ("BAD", "P02", "D33", "33", BAD_NAME)]
    sheet.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    out = root / "report"
    assert main(["report", "--results", str(results), "--out", str(out), "--sheet", str(sheet)]) == 0
    pages = {p.stem: p.read_text(encoding="utf-8") for p in (out / "samples").glob("*.html")}
    return {"root": root, "sim": sim, "results": results, "out": out, "pages": pages,
            "index": (out / "index.html").read_text(encoding="utf-8"), "ids": [r[0] for r in rows[1:]]}


@pytest.fixture(scope="module")
def gated(built):
    """A clean visit gated in process: (GatingResult, its views)."""
    result = ta.gate_sample(ta.read_fcs(built["sim"] / "fcs" / "P01_D0.fcs"))
    assert result.qc is not None and result.qc.keep.all(), "the clean visit should keep every event"
    return result, gate_views(result)


def drawn(result) -> list[dict]:
    return [r for r in result.gates if "population" in r and r["status"] == "ok" and r["method"] != "not"]


# -- bin2d --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [BINS_2D, 7])
def test_bin2d_counts_each_event_once_rows_along_y(bins):
    rng = np.random.default_rng(0)
    x_range, y_range = (-0.25, 1.0), (0.0, 262144.0)
    ix, iy = rng.integers(0, bins, 5000), rng.integers(0, bins, 5000)
    # events at bin centres: the bin of each is known exactly
    x = x_range[0] + (ix + 0.5) * (x_range[1] - x_range[0]) / bins
    y = y_range[0] + (iy + 0.5) * (y_range[1] - y_range[0]) / bins
    counts = bin2d(x, y, x_range, y_range, bins)
    expected = np.zeros((bins, bins), dtype=np.int64)
    np.add.at(expected, (iy, ix), 1)
    assert counts.shape == (bins, bins) and counts.dtype == np.uint32
    assert counts.sum() == x.size
    np.testing.assert_array_equal(counts, expected)
    one = bin2d(np.array([x[0]]), np.array([y[0]]), x_range, y_range, bins)
    assert one[iy[0], ix[0]] == 1 and one.sum() == 1  # row = y, column = x (a heatmap's z)


@pytest.mark.parametrize("bins", [BINS_2D, 7])
def test_bin2d_names_nan_instead_of_counting_it_somewhere(bins):
    x = np.array([0.1, np.nan, 0.5, np.nan])
    y = np.array([np.nan, 0.2, 0.3, np.nan])
    for a, b, name in ((x, np.full(4, 0.5), "x"), (np.full(4, 0.5), y, "y"), (x, y, "x")):
        with pytest.raises(TregAnalysisError, match=rf"bin2d: {name} holds 2 NaN value\(s\).*np.isfinite"):
            bin2d(a, b, (0.0, 1.0), (0.0, 1.0), bins)
    for x_range in ((0.0, np.nan), (1.0, 0.0), (-np.inf, 1.0), (0.5, 0.5)):
        with pytest.raises(TregAnalysisError, match=r"bin2d: x_range must be two finite numbers, low < high"):
            bin2d(np.full(4, 0.5), np.full(4, 0.5), x_range, (0.0, 1.0), bins)
    # infinities are clipped to the edge bins, as any value beyond the range
    counts = bin2d(np.array([-np.inf, np.inf]), np.array([0.5, 0.5]), (0.0, 1.0), (0.0, 1.0), bins)
    assert counts[bins // 2, 0] == 1 and counts[bins // 2, bins - 1] == 1 and counts.sum() == 2


def test_bin2d_matches_histogram2d_away_from_edges():
    rng = np.random.default_rng(1)
    bins = 32
    x, y = rng.uniform(0, 1, 20_000), rng.normal(0.5, 0.2, 20_000).clip(0.001, 0.999)
    inside = (np.abs((x * bins) % 1 - 0.5) < 0.49) & (np.abs((y * bins) % 1 - 0.5) < 0.49)
    x, y = x[inside], y[inside]  # none within float32 rounding of a bin edge
    reference, _, _ = np.histogram2d(y, x, bins=bins, range=[(0, 1), (0, 1)])
    np.testing.assert_array_equal(bin2d(x, y, (0.0, 1.0), (0.0, 1.0), bins), reference)


def test_bin2d_clips_out_of_range_events_to_the_edges():
    bins = 16
    x = np.array([-5.0, -1e30, -np.inf, 0.0, 10.0, 10.0 + 1e-9, 11.0, 1e30, np.inf, 5.0])
    y = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, -3.0])
    counts = bin2d(x, y, (0.0, 10.0), (0.0, 10.0), bins)
    assert counts.sum() == x.size  # nothing dropped
    middle = int(5.0 / 10.0 * bins)
    assert counts[middle, 0] == 4  # -5, -1e30, -inf and the range's low end
    assert counts[middle, bins - 1] == 5  # the high end itself and everything above it
    assert counts[0, middle] == 1  # y below the range: bottom row
    assert counts.sum() - counts[middle, 0] - counts[middle, bins - 1] - counts[0, middle] == 0


# -- gate_views ---------------------------------------------------------------------------------------


def test_gate_views_one_view_per_drawn_gate(gated):
    result, views = gated
    records = drawn(result)
    assert [v["population"] for v in views["gates"]] == [r["population"] for r in records]
    assert {"cells", "singlets", "lymphocytes", "live", "cd3", "cd4", "treg"} <= {v["population"] for v in views["gates"]}
    assert "tcon" not in {v["population"] for v in views["gates"]}  # a complement has no geometry of its own
    for view, record in zip(views["gates"], records):
        channels = list(record["channels"]) + (["SSC-A"] if len(record["channels"]) == 1 else [])
        assert [view["x"], view["y"]] == channels[:2], view["population"]
        assert view["parent"] == record["parent"]
        assert view["counts"].shape == (BINS_2D, BINS_2D) and view["counts"].dtype == np.uint32
        assert view["x"] in views["axes"] and view["y"] in views["axes"]
    assert views["sample"] == "P01_D0.fcs" and views["bins"] == BINS_2D


def test_gate_views_counts_are_the_parents_events(gated):
    result, views = gated
    for view in views["gates"]:
        parent = result.masks[view["parent"]] if view["parent"] != "root" else result.qc.keep
        assert int(view["counts"].sum()) == int(parent.sum()) == view["events_in"], view["population"]


def test_gate_views_percent_of_parent_is_the_population_table(gated):
    result, views = gated
    table = result.populations.set_index("population")
    for view in views["gates"]:
        assert view["pct_parent"] == pytest.approx(table.loc[view["population"], "pct_parent"], rel=1e-12), \
            view["population"]
        assert view["events_out"] == table.loc[view["population"], "count"]


def test_percent_of_parent_agrees_when_qc_removed_events(tmp_path):
    simulate_cohort(tmp_path, subjects=1, events=20_000, seed=3, config={"artefacts": {"margin": 1, "clog": 1}})
    result = ta.gate_sample(ta.read_fcs(tmp_path / "fcs" / "P01_D0.fcs"))
    if result.qc is None or result.qc.keep.all():
        raise RuntimeError("precondition: the artefacts should make the QC remove events")
    table = result.populations.set_index("population")
    for view in gate_views(result)["gates"]:
        assert view["pct_parent"] == pytest.approx(table.loc[view["population"], "pct_parent"]), view["population"]


def test_gate_views_geometry(gated):
    _, views = gated
    by = {v["population"]: v for v in views["gates"]}
    assert by["singlets"]["shape"] == "ratio" and by["singlets"]["ratio"] > 0
    assert by["lymphocytes"]["shape"] == "ellipse" and by["lymphocytes"]["outline"].shape == (2, 121)
    assert [c["axis"] for c in by["cells"]["cuts"]] == ["x"]
    assert [(c["axis"], c["threshold"]) for c in by["treg"]["cuts"]] == [("x", "cd25"), ("y", "foxp3")]
    for view in views["gates"]:
        for cut in view.get("cuts", []):
            lo, hi = views["axes"][view[cut["axis"]]]["range"]
            assert lo <= cut["value"] <= hi, (view["population"], cut)


def test_gate_views_one_histogram_per_threshold(gated):
    result, views = gated
    records = [r for r in result.gates if "threshold" in r and "population" not in r]
    assert [t["threshold"] for t in views["thresholds"]] == [r["threshold"] for r in records]
    assert {"cd3", "cd4", "cd25", "foxp3"} <= {t["threshold"] for t in views["thresholds"]}
    for th, record in zip(views["thresholds"], records):
        assert th["channel"] == record["channel"] and th["on"] == record["on"] and th["value"] == record["value"]
        assert th["counts"].shape == (BINS_1D,) and th["edges"].shape == (BINS_1D + 1,)
        lo, hi = views["axes"][th["channel"]]["range"]
        assert th["edges"][0] == pytest.approx(lo) and th["edges"][-1] == pytest.approx(hi)
        on = result.masks[th["on"]] if th["on"] != "root" else result.qc.keep
        values = result.transformed.get(th["channel"], result.sample.column(th["channel"]))[on]
        # the histogram holds the events it was chosen on that fall inside the axis range
        assert int(th["counts"].sum()) == int(((values >= lo) & (values <= hi)).sum()), th["threshold"]
        assert th["counts"].sum() >= 0.99 * on.sum()


def test_views_file_written_by_gate_is_the_in_process_views(built, gated):
    _, views = gated
    saved = load_views(built["results"] / "P01_D0" / "views.npz")
    assert [v["population"] for v in saved["gates"]] == [v["population"] for v in views["gates"]]
    for a, b in zip(saved["gates"], views["gates"]):
        np.testing.assert_array_equal(a["counts"], b["counts"])


# -- save_views / load_views --------------------------------------------------------------------------


def test_save_load_views_round_trip(gated, tmp_path):
    _, views = gated
    path = save_views(views, tmp_path / "views.npz")
    assert path == tmp_path / "views.npz" and path.is_file()
    back = load_views(path)
    assert back["sample"] == views["sample"] and back["bins"] == views["bins"]
    assert back["axes"] == json.loads(json.dumps(views["axes"]))
    for kind in ("gates", "thresholds"):
        assert len(back[kind]) == len(views[kind])
        for a, b in zip(back[kind], views[kind]):
            assert set(a) == set(b)
            for key, value in b.items():
                if isinstance(value, np.ndarray):
                    assert isinstance(a[key], np.ndarray) and a[key].dtype == value.dtype, (kind, key)
                    np.testing.assert_array_equal(a[key], value)
                else:
                    assert a[key] == json.loads(json.dumps(value)), (kind, key)
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left beside it


def test_save_views_of_a_failed_sample_round_trips(tmp_path):
    empty = {"sample": "x.fcs", "axes": {}, "gates": [], "thresholds": [], "bins": 0}
    assert load_views(save_views(empty, tmp_path / "v.npz")) == empty


def _damaged(kind: str, good: bytes, path: Path) -> None:
    if kind == "garbage":
        path.write_bytes(b"\x00\x13\xffgarbage")
    elif kind == "text":
        path.write_text("population\tcount\ncells\t12\n")
    elif kind == "not views":
        np.savez(path, counts=np.zeros(3))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "flipped bytes":
        damaged = bytearray(good)
        for i in range(len(good) // 3, len(good) // 3 + 64):
            damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
    elif kind == "missing":
        pass




@pytest.mark.parametrize("kind", [
    "garbage", "text", "not views", "missing",
    "empty",
    "truncated",
    "flipped bytes",
])
def test_damaged_views_file_is_an_error_naming_it(built, tmp_path, kind):
    good = (built["results"] / "P01_D0" / "views.npz").read_bytes()
    path = tmp_path / "damaged_views.npz"
    _damaged(kind, good, path)
    with pytest.raises(TregAnalysisError, match=re.escape(str(path))):
        load_views(path)


# -- the pages ----------------------------------------------------------------------------------------


def test_report_files(built):
    out = built["out"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["index.html", PLOTLY_JS] + [f"samples/{s}.html" for s in built["ids"]])
    from plotly.offline import get_plotlyjs

    assert (out / PLOTLY_JS).read_text(encoding="utf-8") == get_plotlyjs()


def test_sample_page_has_a_figure_per_gate_and_threshold(built):
    page = built["pages"]["P01_D0"]
    views = load_views(built["results"] / "P01_D0" / "views.npz")
    gates, thresholds = section(page, "Gating hierarchy"), section(page, "Thresholds")
    assert gates.count('class="plotly-graph-div"') == len(views["gates"]) >= 7
    assert thresholds.count('class="plotly-graph-div"') == len(views["thresholds"]) >= 4
    # each gate's figure in the hierarchy's order, titled with its % of parent
    titles = unescape_json(gates)
    at = [titles.index(f"<b>{v['population']}</b> {v['pct_parent']:.2f}% of {v['parent']}") for v in views["gates"]]
    assert at == sorted(at)
    names = unescape_json(thresholds)
    assert all(f"<b>{t['threshold']}</b> on {t['on']}" in names for t in views["thresholds"])
    ids = re.findall(r'<div id="(fig-\d+)" class="plotly-graph-div"', page)
    assert len(ids) == len(set(ids)) >= len(views["gates"]) + len(views["thresholds"]) + 1  # + the funnel
    assert "Populations" in page and "Provenance" in page


@pytest.mark.parametrize("sample_id", [*GOOD, "PLANTED", "BAD"])
def test_page_loads_the_shared_plotly_js_and_stays_small(built, sample_id):
    page = built["pages"][sample_id]
    path = built["out"] / "samples" / f"{sample_id}.html"
    assert path.stat().st_size <= MAX_PAGE_BYTES
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", page) == [f"../{PLOTLY_JS}"]
    assert "plotly.js v" not in page and "Copyright 2012" not in page  # the bundle is not inlined
    inline = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert all(len(s) < 200_000 for s in inline)
    assert '<a href="../index.html">' in page


def test_index_links_every_sample_page(built):
    index = built["index"]
    links = re.findall(r'<a href="([^"]+)">', index)
    assert links == [f"samples/{s}.html" for s in built["ids"]]  # the sheet's order
    for link in links:
        assert (built["out"] / link).is_file()
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", index) == [PLOTLY_JS]


def test_report_without_a_sheet_lists_the_gated_folders(built, tmp_path):
    pages = write_report(built["results"], tmp_path / "r")
    assert sorted(p.name for p in pages) == sorted([*(f"{s}.html" for s in built["ids"]), "index.html"])
    index = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<a href="([^"]+)">', index) == [f"samples/{s}.html" for s in sorted(built["ids"])]
    assert [p.name for p in (tmp_path / "r").rglob("*.js")] == [PLOTLY_JS]


def test_report_of_nothing_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 1
    assert "no gated samples" in capsys.readouterr().err


def _row(index: str, sample_id: str) -> str:
    return next(r for r in re.findall(r"<tr>.*?</tr>", index) if f'href="samples/{sample_id}.html"' in r)


def test_failed_sample_page_and_index_row(built):
    reason = json.loads((built["results"] / "BAD" / "gates.json").read_text())["error"]
    assert "truncated" in reason
    page = built["pages"]["BAD"]
    assert ">failed</span></h1>" in page
    assert f"<li>{escaped(reason)}</li>" in page
    assert "could not be gated" in page
    assert 'class="plotly-graph-div"' not in page
    row = _row(built["index"], "BAD")
    assert ">failed</b>" in row and escaped(reason) in row
    assert "failed: 1" in built["index"]
    for sample_id in GOOD:
        assert ">pass</b>" in _row(built["index"], sample_id) or ">warn</b>" in _row(built["index"], sample_id)


def test_missing_results_folder_gets_a_failed_page(built, tmp_path):
    sheet = pd.DataFrame({"sample_id": ["P01_D0", "NEVER_GATED"], "subject": ["P01", "P01"]})
    write_report(built["results"], tmp_path / "r", sheet)
    page = (tmp_path / "r" / "samples" / "NEVER_GATED.html").read_text(encoding="utf-8")
    assert ">failed</span></h1>" in page and "No results" in page
    row = _row((tmp_path / "r" / "index.html").read_text(encoding="utf-8"), "NEVER_GATED")
    assert ">failed</b>" in row and "no results" in row


def test_index_row_of_an_empty_population_table_is_failed(built, tmp_path):
    """A results folder whose populations.tsv is empty is listed as failed, as a missing one."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(built["results"] / "P01_D0", results / "P01_D0")
    write_sample_pages(results, tmp_path / "pages")  # as the workflow's pages job, before the table is lost
    (results / "P01_D0" / "populations.tsv").write_text("", encoding="utf-8")
    write_report(results, tmp_path / "r", pages=tmp_path / "pages")
    row = _row((tmp_path / "r" / "index.html").read_text(encoding="utf-8"), "P01_D0")
    assert ">failed</b>" in row and "no results" in row


def test_index_shows_event_counts_as_integers(built):
    total = json.loads((built["results"] / "P01_D0" / "gates.json").read_text())["qc"]["events"]["total"]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _row(built["index"], "P01_D0"))
    assert str(total) in cells and f"{total}.0" not in cells


def test_index_row_shows_the_population_table(built):
    """A sample's CD4 and Treg counts and its Treg % of CD4 on the index are its table's."""
    table = pd.read_csv(built["results"] / "P01_D5" / "populations.tsv", sep="\t").set_index("population")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _row(built["index"], "P01_D5"))
    assert str(int(table.loc["cd4", "count"])) in cells and str(int(table.loc["treg", "count"])) in cells
    assert format(table.loc["treg", "pct_cd4"], ".2f") in cells


def _edited_row(built, tmp_path, edit) -> str:
    """The index row of P01_D0 after ``edit(text)`` of its populations.tsv."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(built["results"] / "P01_D0", results / "P01_D0")
    path = results / "P01_D0" / "populations.tsv"
    path.write_bytes(edit(path.read_text(encoding="utf-8")).encode("utf-8"))
    write_index(results, tmp_path / "index.html")
    return _row((tmp_path / "index.html").read_text(encoding="utf-8"), "P01_D0")


def _set_cell(text: str, population: str, column: str, value: str) -> str:
    lines = text.splitlines(keepends=True)
    at = lines[0].rstrip("\n").split("\t").index(column)
    for i, line in enumerate(lines):
        fields = line.rstrip("\n").split("\t")
        if fields[0] == population:
            fields[at] = value
            lines[i] = "\t".join(fields) + "\n"
    return "".join(lines)


@pytest.mark.parametrize("edit, reason", [
    (lambda t: "count\tparent\n1\tcells\n", "has no population column"),
    (lambda t: t.replace("\tcount\t", "\tevents\t", 1), "has no count column"),
    (lambda t: _set_cell(t, "treg", "count", "NA"), "treg count 'NA' is not a number"),
    (lambda t: _set_cell(t, "treg", "pct_cd4", "n/a"), "treg pct_cd4 'n/a' is not a number"),
    (lambda t: t + [line for line in t.splitlines(keepends=True) if line.startswith("treg\t")][0],
     "lists population 'treg' twice"),
    (lambda t: t.replace("\n", "\textra\n", 2).replace("\textra\n", "\n", 1), "has more fields than columns"),
])
def test_index_row_of_a_broken_population_table_is_failed(built, tmp_path, edit, reason):
    """A table the cohort job would read otherwise, or not at all, is a failed row naming why."""
    row = _edited_row(built, tmp_path, edit)
    assert ">failed</b>" in row and html.escape(reason) in row, row


def test_index_row_reads_blank_cells_and_a_bom_as_pandas_does(built, tmp_path):
    table = pd.read_csv(built["results"] / "P01_D0" / "populations.tsv", sep="\t").set_index("population")
    row = _edited_row(built, tmp_path, lambda t: "\ufeff" + _set_cell(t, "treg", "pct_cd4", ""))
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert ">failed</b>" not in row and str(int(table.loc["treg", "count"])) in cells
    assert format(table.loc["treg", "pct_cd4"], ".2f") not in cells  # blank, as pandas' NaN is shown


# -- the index drawn by the statistics' job (the workflow's stats rule) ----------------------------------


def test_stats_draws_the_index_that_report_draws(built, tmp_path, capsys):
    """`stats --index` writes, from the tables it has just written, the page `report --stats` writes."""
    common = ["--results", str(built["results"]), "--sheet", str(built["root"] / "sheet.tsv")]
    settings = json.dumps({"dosing_days": [0, 3], "healthy_band": [3.0, 9.0]})
    index = tmp_path / "pages" / "index.html"  # its folder made as --out's
    assert main(["stats", *common, "--out", str(tmp_path / "stats"), "--index", str(index),
                 "--report-json", settings]) == 0
    assert f"wrote the cohort page {index}" in capsys.readouterr().out
    assert main(["report", *common, "--stats", str(tmp_path / "stats"), "--config-json", settings,
                 "--out", str(tmp_path / "site")]) == 0
    page = index.read_text(encoding="utf-8")
    assert page == (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Treg expansion" in page and "IL-2 doses" in page
    # and with write_index itself
    sheet = pd.read_csv(built["root"] / "sheet.tsv", sep="\t", dtype=str)
    sheet["day"] = sheet["day"].astype(int)
    assert write_index(built["results"], tmp_path / "plain.html", sheet).read_text(encoding="utf-8") == built["index"]


@pytest.mark.parametrize("argv, expected", [
    (["--cohort", "{stats}/longitudinal.tsv", "--index", "{stats}/index.html"], "--index needs --results and --sheet"),
    (["{common}", "--report-json", "{}"], "--report-json goes with --index"),
    (["{common}", "--index", "{stats}/index.html", "--report-json", "{not json"], "--report-json: not a JSON mapping"),
    (["{common}", "--index", "{stats}/index.html", "--report-json", '{"dosing": [1]}'],
     "report: unknown setting dosing; known: dosing_days"),
])
def test_stats_index_errors_are_one_line(built, tmp_path, capsys, argv, expected):
    """Mistakes in the page's options stop the job before the statistics are computed or written."""
    common = ["--results", str(built["results"]), "--sheet", str(built["root"] / "sheet.tsv")]
    argv = [a for arg in argv for a in (common if arg == "{common}" else [arg.replace("{stats}", str(tmp_path))])]
    code = main(["stats", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("treganalysis: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "index.html").exists()
    assert not (tmp_path / "out").exists()


# -- pages drawn one at a time (the workflow's per-sample jobs) -----------------------------------------


def test_pages_drawn_one_per_call_are_the_report_pages(built, tmp_path):
    """`report --sample ID` (one workflow job per sample) draws the page `report` draws and the
    plotly.min.js it loads, nothing else."""
    sheet = built["root"] / "sheet.tsv"
    for sample_id in built["ids"]:
        assert main(["report", "--results", str(built["results"]), "--sheet", str(sheet), "--sample", sample_id,
                     "--out", str(tmp_path / "pages")]) == 0
    assert sorted(p.relative_to(tmp_path / "pages").as_posix() for p in (tmp_path / "pages").rglob("*")
                  if p.is_file()) == sorted([PLOTLY_JS] + [f"samples/{s}.html" for s in built["ids"]])
    assert (tmp_path / "pages" / PLOTLY_JS).read_bytes() == (built["out"] / PLOTLY_JS).read_bytes()
    for sample_id in built["ids"]:
        assert (tmp_path / "pages" / "samples" / f"{sample_id}.html").read_text(encoding="utf-8") == \
            built["pages"][sample_id]
    # the site built from them copies the pages and writes the same index and plotly.min.js
    assert main(["report", "--results", str(built["results"]), "--sheet", str(sheet), "--pages",
                 str(tmp_path / "pages"), "--out", str(tmp_path / "site")]) == 0
    site = tmp_path / "site"
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()) == sorted(
        ["index.html", PLOTLY_JS] + [f"samples/{s}.html" for s in built["ids"]])
    assert (site / "index.html").read_text(encoding="utf-8") == built["index"]
    for sample_id in built["ids"]:
        assert (site / "samples" / f"{sample_id}.html").read_text(encoding="utf-8") == built["pages"][sample_id]


def test_write_report_copies_the_given_pages(built, tmp_path):
    written = write_sample_pages(built["results"], tmp_path / "pages", ["P01_D5"])
    assert written == [tmp_path / "pages" / "samples" / "P01_D5.html"]
    marked = written[0].read_text(encoding="utf-8").replace("</body>", "<!-- drawn by its own job --></body>")
    written[0].write_text(marked, encoding="utf-8")
    sheet = pd.DataFrame({"sample_id": ["P01_D5"], "subject": ["P01"]})
    write_report(built["results"], tmp_path / "site", sheet, pages=tmp_path / "pages")
    assert (tmp_path / "site" / "samples" / "P01_D5.html").read_text(encoding="utf-8") == marked


def test_a_missing_or_unknown_page_is_an_error(built, tmp_path, capsys):
    sheet = built["root"] / "sheet.tsv"
    (tmp_path / "pages" / "samples").mkdir(parents=True)
    assert main(["report", "--results", str(built["results"]), "--sheet", str(sheet), "--pages",
                 str(tmp_path / "pages"), "--out", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err
    assert "P01_D0.html" in err and "report --sample" in err
    assert not (tmp_path / "site" / "index.html").exists()
    assert main(["report", "--results", str(built["results"]), "--sheet", str(sheet), "--sample", "P09_D0",
                 "--out", str(tmp_path / "pages")]) == 1
    assert "not in the sample sheet: P09_D0" in capsys.readouterr().err


# -- untrusted text ------------------------------------------------------------------------------------


def test_planted_markup_reached_the_results(built):
    record = json.loads((built["results"] / "PLANTED" / "gates.json").read_text())
    assert record["provenance"]["instrument"] == CYT_MARKUP  # the test plants what it means to


@pytest.mark.parametrize("markup", [CYT_MARKUP, SUBJECT_MARKUP, BAD_NAME.removesuffix(".fcs")])
def test_untrusted_text_is_never_written_unescaped(built, markup):
    texts = {**{f"samples/{k}.html": v for k, v in built["pages"].items()}, "index.html": built["index"]}
    for name, text in texts.items():
        assert markup not in text, name
    assert "<img" not in "".join(texts.values()) and "<script>alert" not in "".join(texts.values())


def test_untrusted_text_is_shown_escaped(built):
    planted, index = built["pages"]["PLANTED"], built["index"]
    assert f'<td class="l">{escaped(CYT_MARKUP)}</td>' in planted  # provenance: instrument ($CYT)
    assert f"subject: <b>{escaped(SUBJECT_MARKUP)}</b>" in planted
    assert f'<td class="l">{escaped(SUBJECT_MARKUP)}</td>' in _row(index, "PLANTED")
    if os.name != "nt":
        assert escaped(BAD_NAME) in built["pages"]["BAD"] and escaped(BAD_NAME) in _row(index, "BAD")


# -- figures as plain dicts ------------------------------------------------------------------------------


def _as_plotly_holds_it(fig: dict) -> None:
    """A figure of treganalysis.plot is what plotly's validated Figure holds: validation neither
    refuses nor changes a property (the dict skips it, 20 ms a figure)."""
    import plotly.graph_objects as go
    from plotly.io.json import to_json_plotly

    assert set(fig) == {"data", "layout"}
    assert json.loads(to_json_plotly(go.Figure(fig).to_dict())) == json.loads(to_json_plotly(fig))


@pytest.mark.parametrize("sample_id", ["P01_D0", "PLANTED"])
def test_sample_figures_are_plotly_figures(built, sample_id):
    from treganalysis.plot import funnel_figure, gate_figure, spillover_figure, threshold_figure, time_figure
    from treganalysis.report import _funnel

    folder = built["results"] / sample_id
    views = load_views(folder / "views.npz")
    record = json.loads((folder / "gates.json").read_text())
    figures = [gate_figure(v, views["axes"]) for v in views["gates"]]
    figures += [threshold_figure(t, views["axes"]) for t in views["thresholds"]]
    figures += [time_figure(record["qc"], {"B530-A": "<i>ki67"}),
                funnel_figure(_funnel(record, pd.read_csv(folder / "populations.tsv", sep="\t"))),
                spillover_figure(record["provenance"]["compensation"])]
    assert {v.get("shape") for v in views["gates"]} >= {"cuts", "ratio", "ellipse"}
    for fig in figures:
        _as_plotly_holds_it(fig)


@pytest.mark.parametrize("signals", [True, False])
def test_time_figure_is_plotly_subplots_with_the_runs_shaded(signals):
    """The two rows (or one) and the removed runs as plotly's make_subplots and add_vrect lay them
    out, byte for byte in the page."""
    from plotly.io.json import to_json_plotly
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    from treganalysis.plot import time_figure

    centres = np.array([0.5, 1.5, 2.5])
    record = {"edges": [0, 1, 2, 3], "rate": [4.0, 5.0, 6.0], "unit": "s<b>",
              "removed_runs": [{"start": 0.0, "stop": 1.0, "why": ["rate", "<b>x"]}, {"start": 2.0, "stop": 3.0, "why": ["y"]}]}
    if signals:
        record["signals"] = {"A": {"means": [[1.0, 2.0, np.nan], [3.0, 2.0, 1.0]]}, "B": {"means": [[1.0, 1.0, 1.0]]}}
    ours = time_figure({"time": record}, {"A": "cd4"})
    rows = 2 if signals else 1
    ref = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.35, 0.65] if rows == 2 else [1.0])
    ref.add_trace(go.Scatter(x=centres, y=np.float32(record["rate"]), mode="lines", name="event rate",
                             line={"color": "#333", "width": 1.5}), row=1, col=1)
    for i, (channel, name) in enumerate([("A", "CD4 (A)"), ("B", "B")] if signals else []):
        for p, means in enumerate(record["signals"][channel]["means"]):
            ref.add_trace(go.Scatter(x=centres, y=np.float32(means), mode="lines", name=name if p == 0 else f"{name} pop {p + 1}",
                                     legendgroup=channel, showlegend=p == 0,
                                     line={"color": ["#1f77b4", "#ff7f0e"][i], "width": 1}), row=2, col=1)
    for run in record["removed_runs"]:
        ref.add_vrect(x0=run["start"], x1=run["stop"], fillcolor="#d62728", opacity=0.18, line_width=0,
                      annotation_text="removed: " + escaped(", ".join(run["why"])),
                      annotation_position="top left", annotation_font_size=10)
    ref.update_layout(template={"layout": ours["layout"]["template"]["layout"]}, width=920, height=420 if signals else 220,
                      legend={"font": {"size": 10}}, margin={"t": 20})
    ref.update_yaxes(title_text="events / s&lt;b&gt;", row=1, col=1)
    if signals:
        ref.update_yaxes(title_text="mean arcsinh signal", row=2, col=1)
    ref.update_xaxes(title_text="time (s&lt;b&gt;)", row=rows, col=1)
    expected = ref.to_dict()
    expected["layout"]["template"] = ours["layout"]["template"]  # ordered as plotly's constructor stores it
    for part in ("data", "layout"):
        assert to_json_plotly(ours[part]) == to_json_plotly(expected[part]), part


def test_cohort_figures_are_plotly_figures():
    from treganalysis.plot import (estimates_figure, slope_figure, trajectory_figure, visit_medians_figure,
                                   waterfall_figure)

    subjects, days = ["P01", "<b>P02"], [0, 5, 12]
    long = pd.DataFrame([{"subject": s, "day": d, "timepoint": f"D{d}", "population": pop, "value": v,
                          "value_low": v - 0.5, "value_high": v + 0.5, "baseline": 4.0, "fold_change": v / 4.0,
                          "unit": "% of CD4", "is_baseline": d == 0}
                         for s in subjects for d in days for pop in ("treg", "cd25_mfi_treg")
                         for v in [4.0 + d / (2 + subjects.index(s))]])
    responders = pd.DataFrame({"subject": subjects, "timepoint": "D5", "fold_change": [1.6, 1.2], "rcv": [0.3, 0.3],
                               "responder": [True, False]})
    tests = pd.DataFrame({"population": "treg", "timepoint": ["D5", "D12"], "test": "mixed_model", "n": 2,
                          "estimate": [0.4, 0.2], "ci_low": [0.1, -0.1], "ci_high": [0.7, 0.5], "p_value": [0.01, 0.2],
                          "p_adjusted": [0.02, 0.2], "estimate_scale": "logit"})
    figures = [trajectory_figure(long, "treg", [0, 5], (4, 8.0), responders), trajectory_figure(long, "treg", (), None),
               slope_figure(long, "D5", {"p_value": 0.5, "n": 2, "estimate": 1.0, "ci_low": 0.0, "ci_high": 2.0}),
               waterfall_figure(responders), estimates_figure(tests, "treg"),
               visit_medians_figure(long, ["treg", "cd25_mfi_treg"], "<i>medians")]
    for fig in figures:
        _as_plotly_holds_it(fig)
