"""The QC report in a real browser: Debian's Chromium, headless, driven by Playwright.

A small report is built once per module (one simulated subject, three visits gated, a copy of a
visit whose ``$CYT`` keyword is HTML markup, a truncated file recorded as failed, and a sample
sheet whose subject is a ``<script>`` element). The pages are opened from disk (``file://``) as a
user would open them: they must load with no console or page errors and no network request,
draw every figure, navigate from the index to a sample, and show planted markup as text.

Playwright drives /usr/bin/chromium (its own browser download is never used). Without
Chromium, Playwright or Pillow the module is skipped, except when the environment variable
``CI`` is set: then every test fails and says what is missing, since CI must run it.
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest

import treganalysis as ta
from treganalysis.cli import main
from treganalysis.fcs import write_fcs
from treganalysis.report import write_report
from treganalysis.sheet import load_sample_sheet
from treganalysis.simulate import simulate_cohort

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 # this machine (and a CI runner's sandbox) may have no network: no background requests
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VISITS = ("P01_D0", "P01_D5", "P01_D12")
RENDER_TIMEOUT_MS = 30_000
CYT_MARKUP = "<img src=x onerror=alert(1)>"
SUBJECT_MARKUP = "<script>alert(1)</script>"

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
MISSING = [what for what, absent in [
    (f"Chromium ({CHROMIUM}; apt-get install chromium)", not CHROMIUM.is_file()),
    ("the playwright package (pip install -e '.[test]')", importlib.util.find_spec("playwright") is None),
    ("the pillow package (pip install -e '.[test]')", importlib.util.find_spec("PIL") is None),
] if absent]
if MISSING and not IN_CI:
    pytest.skip(f"browser tests need {' and '.join(MISSING)}", allow_module_level=True)


def plant_cyt(source: Path, path: Path, cyt: str) -> Path:
    """A copy of an FCS file with ``$CYT`` replaced (as in test_report.py)."""
    sample = ta.read_fcs(source)
    keep = {k: sample.metadata[k] for k in ("$TIMESTEP", "$DATE", "$BTIM", "$ETIM") if sample.metadata.get(k)}
    return write_fcs(path, sample.events, sample.channels, sample.markers, ranges=sample.ranges,
                     spillover=sample.spillover, keywords={**keep, "$CYT": cyt})


# -- the report and the browser, once per module ----------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    sim = root / "sim"
    simulate_cohort(sim, subjects=1, events=20_000, seed=7)
    results = root / "results"
    for sample_id in VISITS:
        assert main(["gate", str(sim / "fcs" / f"{sample_id}.fcs"), "--out", str(results / sample_id)]) == 0
    plant_cyt(sim / "fcs" / "P01_D33.fcs", root / "planted.fcs", CYT_MARKUP)
    assert main(["gate", str(root / "planted.fcs"), "--out", str(results / "PLANTED")]) == 0
    (root / "truncated.fcs").write_bytes((sim / "fcs" / "P01_D33.fcs").read_bytes()[:50_000])
    assert main(["gate", str(root / "truncated.fcs"), "--record-failure", "--out", str(results / "BAD")]) == 0
    lines = ["sample_id\tsubject\ttimepoint\tday\tfcs"]
    lines += [f"{s}\tP01\t{s.split('_')[1]}\t{s.split('_D')[1]}\tsim/fcs/{s}.fcs" for s in VISITS]
    lines += [f"PLANTED\t{SUBJECT_MARKUP}\tD33\t33\tplanted.fcs", "BAD\tP02\tD0\t0\ttruncated.fcs"]
    (root / "sheet.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sheet = load_sample_sheet(root / "sheet.tsv", check_files=False).reset_index(drop=True)
    write_report(results, root / "report", sheet)
    return root / "report"


@pytest.fixture(scope="module")
def browser():
    if MISSING:  # only with CI set: the module is skipped otherwise
        pytest.fail(f"CI is set, so the browser tests must run, but {' and '.join(MISSING)} "
                    "is missing (.ci/run installs them)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page with everything it reported: console errors and warnings, uncaught errors,
    dialogs, requests that were not to a local file, and failed requests."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(RENDER_TIMEOUT_MS)
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.remote: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.remote.append(r.url) if not r.url.startswith("file://") else None)
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def open(self, path: Path) -> "Tab":
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        return self

    def wait_for_figures(self) -> int:
        """Wait until every plotly div holds its SVG; returns how many there are."""
        assert self.page.evaluate("typeof window.Plotly") == "object", \
            f"plotly.min.js did not load: {self.failed or self.console or self.errors}"
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))")
        return self.page.locator(".plotly-graph-div").count()

    def assert_clean(self) -> None:
        assert self.console == [], self.console
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.remote == [], f"the page asked the network for {self.remote}"
        assert self.failed == [], self.failed


@pytest.fixture
def tab(browser):
    t = Tab(browser)
    yield t
    t.context.close()


@pytest.fixture(scope="module")
def sample_tab(browser, site):
    """The first visit's page, loaded and drawn once for the tests that only look at it."""
    t = Tab(browser).open(site / "samples" / "P01_D0.html")
    t.figures = t.wait_for_figures()
    yield t
    t.context.close()


# -- a sample's page -----------------------------------------------------------------------------------


def test_sample_page_loads_without_errors(sample_tab):
    sample_tab.assert_clean()
    assert sample_tab.page.evaluate("typeof window.Plotly") == "object"  # ../plotly.min.js was found
    assert "P01_D0" in sample_tab.page.locator("h1").inner_text()


def test_every_figure_rendered(sample_tab):
    page = sample_tab.page
    assert sample_tab.figures >= 12  # 7+ gates, 4+ thresholds, the funnel
    divs = page.locator(".plotly-graph-div")
    for i in range(sample_tab.figures):
        div = divs.nth(i)
        assert div.locator("svg.main-svg").count() >= 1, div.get_attribute("id")
        box = div.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, div.get_attribute("id")
    gates = page.locator("h2:has-text('Gating hierarchy') + div.strip .plotly-graph-div")
    assert gates.count() >= 7
    assert "cells" in gates.first.inner_text() and "% of root" in gates.first.inner_text()


def test_first_gate_figure_is_not_blank(sample_tab):
    from PIL import Image

    figure = sample_tab.page.locator("h2:has-text('Gating hierarchy') + div.strip .plotly-graph-div").first
    image = Image.open(io.BytesIO(figure.screenshot())).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3)
    assert image.width >= 200 and image.height >= 200
    colours = len(np.unique(pixels, axis=0))
    assert colours > 100, f"{colours} distinct colours: the density was not drawn"
    assert pixels.std() > 20
    not_white = (pixels < 240).any(axis=1).mean()
    assert not_white > 0.05, f"only {not_white:.1%} of the figure is not white"
    # the density's colours (blue to red), not only black axes and text
    r, g, b = pixels.astype(int).T
    assert ((abs(r - g) > 60) | (abs(g - b) > 60) | (abs(r - b) > 60)).mean() > 0.01


# -- the index and navigation -------------------------------------------------------------------------


def test_index_loads_without_errors_and_lists_every_sample(tab, site):
    tab.open(site / "index.html")
    tab.assert_clean()
    links = tab.page.locator("table a")
    assert [links.nth(i).inner_text() for i in range(links.count())] == [*VISITS, "PLANTED", "BAD"]
    bad = tab.page.locator("tr", has=tab.page.locator("a", has_text="BAD"))
    assert "failed" in bad.inner_text() and "truncated" in bad.inner_text()


def test_index_link_opens_the_sample_page(tab, site):
    tab.open(site / "index.html")
    tab.page.get_by_role("link", name="P01_D5", exact=True).click()
    tab.page.wait_for_url("**/samples/P01_D5.html")
    assert tab.page.url == (site / "samples" / "P01_D5.html").resolve().as_uri()
    assert "P01_D5" in tab.page.locator("h1").inner_text()
    assert tab.wait_for_figures() >= 12
    tab.assert_clean()
    # and back to the index from the page's own link
    tab.page.get_by_role("link", name="cohort index").click()
    tab.page.wait_for_url("**/index.html")
    tab.assert_clean()


# -- planted markup -----------------------------------------------------------------------------------


def test_planted_markup_is_shown_as_text(tab, site):
    tab.open(site / "samples" / "PLANTED.html")
    assert tab.wait_for_figures() >= 12
    page = tab.page
    page.wait_for_timeout(300)  # an onerror handler would fire once the image failed to load
    tab.assert_clean()  # no dialog: neither alert(1) ran
    assert page.locator('img[src="x"]').count() == 0 and page.locator("img").count() == 0
    assert page.locator("script:not([src])", has_text="alert(1)").count() == 0
    cyt = page.get_by_text(CYT_MARKUP, exact=True)
    assert cyt.count() == 1 and cyt.is_visible()
    assert SUBJECT_MARKUP in page.locator("p.muted").nth(1).inner_text()
    assert CYT_MARKUP in page.locator("body").inner_text()


def test_planted_subject_is_text_on_the_index(tab, site):
    tab.open(site / "index.html")
    tab.page.wait_for_timeout(300)
    tab.assert_clean()
    assert tab.page.get_by_text(SUBJECT_MARKUP, exact=True).count() == 1
    assert tab.page.evaluate("document.querySelectorAll('body script').length") == 0
