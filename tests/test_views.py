"""Gate views (treganalysis.views) against direct computations on the parents' events.

``gate_views`` ranges each axis with an exact tail quantile found without sorting every event,
bins each channel once on the thresholds' 256-bin grid and builds a gate's 128 x 128 counts
from one ``np.bincount`` of its parent's grid slots. These tests recompute each output the
plain way (``np.quantile`` of the kept events, :func:`bin2d` and ``np.histogram2d`` of the
parent's events, ``np.histogram`` of a threshold's population) on a simulated sample large
enough for the sampled tail search, and on synthetic results that exercise what a simulated
sample does not: both memory layouts, NaN events that QC removed, a float64 channel, thresholds
with no view on the same population and channel, other ``bins``. The views file is read back
as written now and as written before (``np.savez_compressed``). Nothing here times anything.
"""

from __future__ import annotations

import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

import treganalysis as ta
from treganalysis.sample import Sample
from treganalysis.simulate import simulate_cohort
from treganalysis.views import (_BOUND_SAMPLE, _SMALL, BINS_1D, BINS_2D, _kept_quantile, bin2d, gate_views,
                                load_views, save_views)


def channel_values(result, channel: str) -> np.ndarray:
    return result.transformed[channel] if channel in result.transformed else result.sample.column(channel)


def population(result, name: str) -> np.ndarray:
    if name != "root":
        return result.masks[name]
    return result.qc.keep if result.qc is not None else np.ones(result.sample.n_events, dtype=bool)


def reference_counts(x: np.ndarray, y: np.ndarray, x_range, y_range, bins: int) -> np.ndarray:
    """A gate's counts written out: float32 scaling as bin2d documents it, clipped to the edge
    bins, one bincount."""
    def index(v, span):
        lo, hi = span
        scaled = (np.asarray(v, dtype=np.float32) - np.float32(lo)) * np.float32(bins / (hi - lo))
        return np.clip(np.floor(scaled), 0, bins - 1).astype(np.int64)

    return np.bincount(index(y, y_range) * bins + index(x, x_range), minlength=bins * bins).reshape(bins, bins)


def assert_views_are_the_parents(result, views, bins: int = BINS_2D) -> None:
    """Every gate's counts are bin2d (and the written-out bincount) of its parent's events."""
    assert views["gates"], "no views drawn"
    for view in views["gates"]:
        parent = population(result, view["parent"])
        x, y = channel_values(result, view["x"])[parent], channel_values(result, view["y"])[parent]
        x_range, y_range = tuple(views["axes"][view["x"]]["range"]), tuple(views["axes"][view["y"]]["range"])
        counts = view["counts"]
        assert counts.dtype == np.uint32 and counts.shape == (bins, bins), view["population"]
        assert int(counts.sum()) == int(parent.sum()), view["population"]
        np.testing.assert_array_equal(counts, bin2d(x, y, x_range, y_range, bins), err_msg=view["population"])
        np.testing.assert_array_equal(counts, reference_counts(x, y, x_range, y_range, bins),
                                      err_msg=view["population"])


def assert_histograms_are_the_populations(result, views) -> None:
    """Every threshold's histogram is np.histogram of its population (events outside the axis
    range left out, as before), up to events within float32 rounding of a bin edge."""
    assert views["thresholds"], "no thresholds drawn"
    for th in views["thresholds"]:
        values = channel_values(result, th["channel"])[population(result, th["on"])]
        lo, hi = views["axes"][th["channel"]]["range"]
        expected, edges = np.histogram(values, bins=BINS_1D, range=(lo, hi))
        counts = th["counts"]
        assert counts.dtype == np.uint32 and counts.shape == (BINS_1D,), th["threshold"]
        np.testing.assert_array_equal(th["edges"], edges.astype(np.float32), err_msg=th["threshold"])
        inside = int(((values >= lo) & (values <= hi)).sum())
        assert int(counts.sum()) == inside == int(expected.sum()), th["threshold"]
        # np.histogram checks each event against its float32 edges; the grid takes the float32
        # scaled value as bin2d does: they may disagree for an event on an edge, nowhere else
        moved = np.abs(counts.astype(np.int64) - expected).sum()
        assert moved <= max(4, values.size // 20_000), (th["threshold"], moved)


# -- a simulated sample, large enough for the sampled tail search -----------------------------------


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A simulated visit of 90,000 events gated in process: (GatingResult, its views)."""
    folder = tmp_path_factory.mktemp("views")
    simulate_cohort(folder, subjects=1, events=90_000, seed=7)
    result = ta.gate_sample(ta.read_fcs(folder / "fcs" / "P01_D0.fcs"))
    assert int(result.qc.keep.sum()) >= _SMALL, "precondition: enough kept events for the sampled tail search"
    return result, gate_views(result)


def test_ranges_are_the_quantiles_of_the_kept_events(gated):
    result, views = gated
    keep = result.qc.keep
    transforms = result.provenance["transforms"]
    for channel, axis in views["axes"].items():
        values = channel_values(result, channel)[keep]
        if transforms.get(channel, {}).get("transform") == "logicle":
            expected = [max(min(float(np.quantile(values, 0.001)), 0.0) - 0.02, -0.25), 1.0]
        else:
            expected = [0.0, max(float(np.quantile(values, 0.999)) * 1.05, 1.0)]
        assert axis["range"] == expected, channel  # exactly: the same order statistics, the same arithmetic


def test_gate_counts_are_the_parents_events(gated):
    result, views = gated
    assert_views_are_the_parents(result, views)
    for view in views["gates"]:
        assert int(view["counts"].sum()) == view["events_in"], view["population"]


def test_gate_counts_match_histogram2d_of_the_clipped_events(gated):
    result, views = gated
    for view in views["gates"]:
        parent = population(result, view["parent"])
        (x_lo, x_hi), (y_lo, y_hi) = views["axes"][view["x"]]["range"], views["axes"][view["y"]]["range"]
        x = np.clip(channel_values(result, view["x"])[parent].astype(np.float64), x_lo, x_hi)
        y = np.clip(channel_values(result, view["y"])[parent].astype(np.float64), y_lo, y_hi)
        expected, _, _ = np.histogram2d(y, x, bins=BINS_2D, range=[(y_lo, y_hi), (x_lo, x_hi)])
        moved = np.abs(view["counts"] - expected).sum()  # float64 edges against float32 scaling
        assert expected.sum() == view["counts"].sum() and moved <= max(4, x.size // 20_000), (view["population"], moved)


def test_threshold_histograms_are_their_populations(gated):
    result, views = gated
    assert_histograms_are_the_populations(result, views)


def test_views_round_trip_through_the_file(gated, tmp_path):
    _, views = gated
    back = load_views(save_views(views, tmp_path / "views.npz"))
    assert back["axes"] == json.loads(json.dumps(views["axes"]))
    for kind in ("gates", "thresholds"):
        for a, b in zip(back[kind], views[kind], strict=True):
            for key, value in b.items():
                if isinstance(value, np.ndarray):
                    assert a[key].dtype == value.dtype, (kind, key)
                    np.testing.assert_array_equal(a[key], value)


# -- _kept_quantile -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("q", [0.001, 0.999, 0.01, 0.99])
@pytest.mark.parametrize("kept", ["all", "most", "half"])
def test_kept_quantile_is_np_quantile(dtype, q, kept):
    rng = np.random.default_rng(11)
    n = 150_001
    values = np.concatenate([rng.normal(0.3, 0.1, n - 20_000), rng.lognormal(0.0, 1.0, 20_000)]).astype(dtype)
    rng.shuffle(values)
    values[rng.integers(0, n, 2_000)] = values[0]  # ties
    keep = {"all": None, "most": rng.random(n) < 0.98, "half": rng.random(n) < 0.5}[kept]
    chosen = values if keep is None else values[keep]
    assert _kept_quantile(values, keep, chosen.size, q) == float(np.quantile(chosen, q))


def test_kept_quantile_of_a_strided_column_and_of_few_events():
    rng = np.random.default_rng(12)
    matrix = rng.gamma(2.0, 1000.0, (100_000, 3)).astype(np.float32)
    column = matrix[:, 1]
    assert _kept_quantile(column, None, column.size, 0.999) == float(np.quantile(column, 0.999))
    few = column[: _SMALL // 2]
    assert _kept_quantile(few, None, few.size, 0.001) == float(np.quantile(few, 0.001))


def test_kept_quantile_when_the_subsample_misleads():
    """Every event of the systematic subsample is in the far tail: the bound lies beyond the
    quantile, too few events are past it, and np.quantile of all kept events is taken."""
    rng = np.random.default_rng(13)
    n = 200_000
    values = rng.normal(size=n).astype(np.float32)
    step = max(1, n // _BOUND_SAMPLE)
    values[::step] = 1e6 + rng.random(values[::step].size).astype(np.float32)
    assert _kept_quantile(values, None, n, 0.999) == float(np.quantile(values, 0.999))
    values[::step] = -values[::step]
    assert _kept_quantile(values, None, n, 0.001) == float(np.quantile(values, 0.001))


def test_kept_quantile_of_constant_values():
    values = np.full(100_000, 3.5, dtype=np.float32)
    assert _kept_quantile(values, None, values.size, 0.999) == 3.5
    assert _kept_quantile(values, None, values.size, 0.001) == 3.5


# -- synthetic results --------------------------------------------------------------------------------

CHANNELS = ["FSC-A", "FSC-H", "SSC-A", "CD3", "CD4", "Time"]
LOGICLE = {"transform": "logicle", "T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}


def synthetic(n: int = 80_000, *, layout: str = "C", nan_events: int = 0, keep_all: bool = False,
              cd4_float64: bool = False, inside: bool = False, seed: int = 3) -> SimpleNamespace:
    """A GatingResult-like object: scatter in the event matrix (FSC-A also as a "transformed"
    view of it, as gate_sample has it), CD3/CD4 on a Logicle-like scale, QC keep, nested
    populations from dense (cells: ~90 %) to sparse (cd4: ~10 %), gates and thresholds drawn
    on them, some thresholds on a population/channel that no view shows."""
    rng = np.random.default_rng(seed)
    fsc = rng.gamma(6.0, 12_000.0, n)
    events = np.column_stack([fsc, fsc * rng.normal(0.8, 0.05, n), rng.gamma(3.0, 15_000.0, n),
                              rng.normal(0, 1, n), rng.normal(0, 1, n), np.arange(n) / 100.0]).astype(np.float32)
    if nan_events:
        events[rng.choice(n, nan_events, replace=False), :3] = np.nan
    events = np.ascontiguousarray(events) if layout == "C" else np.asfortranarray(events)
    sample = Sample(events=events, channels=list(CHANNELS), markers=["", "", "", "CD3", "CD4", ""])
    positive = rng.random(n) < 0.5
    cd3 = np.where(positive, rng.normal(0.65, 0.08, n), rng.normal(0.1, 0.06, n)).astype(np.float32)
    cd4 = np.where(rng.random(n) < 0.6, rng.normal(0.6, 0.1, n), rng.normal(0.15, 0.1, n))
    cd4 = cd4.astype(np.float64 if cd4_float64 else np.float32)
    if inside:  # every value well inside the axes
        cd3, cd4 = np.clip(cd3, 0.05, 0.95), np.clip(cd4, 0.05, 0.95)
        events[:, :3] = np.clip(events[:, :3], 1.0, 60_000.0)
    transformed = {"FSC-A": sample.column("FSC-A"), "CD3": cd3, "CD4": cd4}
    keep = np.isfinite(events[:, :3]).all(axis=1)
    if not keep_all:
        keep &= rng.random(n) < 0.97
    cells = keep & (events[:, 0] > np.quantile(events[keep, 0], 0.08))
    lymphocytes = cells & (events[:, 2] < np.quantile(events[keep, 2], 0.6))
    cd3_pos = lymphocytes & (cd3 > 0.4)
    cd4_pos = cd3_pos & (cd4 > 0.4)
    masks = {"cells": cells, "lymphocytes": lymphocytes, "cd3": cd3_pos, "cd4": cd4_pos, "cd8": cd3_pos & ~cd4_pos,
             "nobody": np.zeros(n, dtype=bool)}

    def cut(threshold, value):
        return {"value": value, "side": "above", "threshold": threshold, "method_used": "valley", "fallback": False}

    def threshold(name, on, channel, value):
        return {"threshold": name, "on": on, "channel": channel, "value": value, "value_raw": value * 1000,
                "method_used": "valley", "fallback": False, "confidence": 0.9}

    def gate(name, parent, channels, method="rule", **extra):
        return {"population": name, "parent": parent, "channels": channels, "method": method, "status": "ok",
                "events_in": int(population_of(parent).sum()), "events_out": int(masks.get(name, keep).sum()),
                **extra}

    def population_of(name):
        return keep if name == "root" else masks[name]

    gates = [
        threshold("fsc_debris", "root", "FSC-A", 20_000.0),
        gate("cells", "root", ["FSC-A"], cuts=[cut("fsc_debris", 20_000.0)]),
        gate("lymphocytes", "cells", ["FSC-A", "SSC-A"], "gmm_ellipse", mean=[70_000.0, 40_000.0],
             covariance=[[4e8, 1e8], [1e8, 3e8]], distance_square=5.99),
        gate("singlet_like", "cells", ["FSC-A", "FSC-H"], "singlet_ratio", cuts=[cut("ratio", 0.8)]),
        threshold("cd3", "lymphocytes", "CD3", 0.4),
        gate("cd3", "lymphocytes", ["CD3"], cuts=[cut("cd3", 0.4)]),
        threshold("cd4", "cd3", "CD4", 0.4),
        gate("cd4", "cd3", ["CD4", "CD3"], cuts=[cut("cd4", 0.4), cut("cd3", 0.4)]),
        gate("cd4_scatter", "cd3", ["CD4", "FSC-H"], cuts=[cut("cd4", 0.4)]),
        gate("cd8", "cd3", [], "not"),  # a complement: not drawn
        {**gate("failed", "cd4", ["CD4"]), "status": "failed"},  # not drawn
        # thresholds with no view on their population and channel
        threshold("cd4_on_all", "root", "CD4", 0.4),
        threshold("fsch_on_cd4", "cd4", "FSC-H", 30_000.0),
        threshold("pooled", "elsewhere", "CD4", 0.4),  # population not in this sample: not drawn
        # a population without events
        gate("ghost", "nobody", ["CD4", "CD3"], cuts=[cut("cd4", 0.4), cut("cd3", 0.4)]),
        threshold("ghost_cd3", "nobody", "CD3", 0.4),
        threshold("ghost_fsca", "nobody", "FSC-A", 0.4),
    ]
    return SimpleNamespace(sample=sample, transformed=transformed, masks=masks, gates=gates,
                           provenance={"transforms": {"CD3": LOGICLE, "CD4": LOGICLE}},
                           panel={"CD3": "CD3", "CD4": "CD4", "CD8": None},
                           qc=SimpleNamespace(keep=keep) if not keep_all else None)


def views_equal(a, b) -> None:
    assert a["axes"] == b["axes"]
    for kind in ("gates", "thresholds"):
        assert len(a[kind]) == len(b[kind])
        for one, other in zip(a[kind], b[kind]):
            assert set(one) == set(other)
            for key, value in one.items():
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(value, other[key], err_msg=f"{kind} {key}")
                else:
                    assert value == other[key] or (value != value and other[key] != other[key]), (kind, key)


@pytest.mark.parametrize("layout", ["C", "F"])
def test_synthetic_views_are_the_parents_events(layout):
    result = synthetic(layout=layout, nan_events=50)
    views = gate_views(result)
    drawn = [v["population"] for v in views["gates"]]
    assert drawn == ["cells", "lymphocytes", "singlet_like", "cd3", "cd4", "cd4_scatter", "ghost"]
    assert [t["threshold"] for t in views["thresholds"]] == ["fsc_debris", "cd3", "cd4", "cd4_on_all", "fsch_on_cd4",
                                                             "ghost_cd3", "ghost_fsca"]
    ghost = views["gates"][-1]
    assert ghost["counts"].sum() == 0 and ghost["events_in"] == 0 and ghost["pct_parent"] != ghost["pct_parent"]
    assert all(t["counts"].sum() == 0 for t in views["thresholds"][-2:])
    assert list(views["axes"]) == ["FSC-A", "SSC-A", "FSC-H", "CD3", "CD4"]  # first use, as before
    assert views["axes"]["CD3"]["label"] == "CD3" and views["axes"]["FSC-A"]["transform"] == {"transform": "linear"}
    assert_views_are_the_parents(result, views)
    assert_histograms_are_the_populations(result, views)


def test_row_and_column_major_events_give_the_same_views():
    views_equal(gate_views(synthetic(layout="C")), gate_views(synthetic(layout="F")))


def test_every_event_kept_and_no_qc():
    result = synthetic(keep_all=True)
    assert result.qc is None
    views = gate_views(result)
    assert_views_are_the_parents(result, views)
    assert_histograms_are_the_populations(result, views)


def test_threshold_histograms_hold_every_event_inside_the_range():
    result = synthetic(inside=True)
    views = gate_views(result)
    for th in views["thresholds"]:
        assert int(th["counts"].sum()) == int(population(result, th["on"]).sum()), th["threshold"]


def test_a_float64_channel_is_binned_as_bin2d_bins_it():
    result = synthetic(cd4_float64=True)
    views = gate_views(result)
    assert_views_are_the_parents(result, views)
    assert_histograms_are_the_populations(result, views)


@pytest.mark.parametrize("bins", [64, 256, 100, 7])
def test_other_numbers_of_bins(bins):
    """Divisors of 256 by a power of two fold the grid; any other number bins with bin2d."""
    result = synthetic(n=20_000)
    views = gate_views(result, bins=bins)
    assert views["bins"] == bins
    assert_views_are_the_parents(result, views, bins)
    assert_histograms_are_the_populations(result, views)


def test_gate_views_of_a_few_events():
    result = synthetic(n=3_000, nan_events=5)
    views = gate_views(result)
    assert_views_are_the_parents(result, views)
    assert_histograms_are_the_populations(result, views)


# -- the views file --------------------------------------------------------------------------------------


def test_old_and_new_files_read_the_same(tmp_path):
    views = gate_views(synthetic(n=20_000))
    new = save_views(views, tmp_path / "new.npz")
    # a file as save_views wrote it before: the same members, np.savez_compressed's default level
    with np.load(new) as archive:
        np.savez_compressed(tmp_path / "old.npz", **{name: archive[name] for name in archive.files})
    with zipfile.ZipFile(new) as archive:  # still an .npz: deflated .npy members
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())
        assert "meta.npy" in archive.namelist()
    with np.load(new) as archive:
        np.testing.assert_array_equal(archive["gates/0/counts"], views["gates"][0]["counts"])
    a, b = load_views(new), load_views(tmp_path / "old.npz")
    views_equal(a, b)
    for kind in ("gates", "thresholds"):
        for item, original in zip(a[kind], views[kind]):
            for key, value in original.items():
                if isinstance(value, np.ndarray):
                    assert item[key].dtype == value.dtype
                    np.testing.assert_array_equal(item[key], value)
