"""Acquisition QC (treganalysis.qc): margins, time QC, over-compensation, the sample status, and
how gate_sample uses it.

Time QC is checked on small synthetic acquisitions whose artefacts are planted at known bins
(a thinned stretch for a clog, a shifted population for a drift), and end to end on simulated
samples (treganalysis.simulate) with their recorded artefacts. Everything here is fast (a few
seconds); the detection rates over many seeds are measured by benchmarks/qc_detection.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from treganalysis import compensate, read_fcs
from treganalysis.gating.strategy import gate_sample
from treganalysis.qc import DEFAULTS, QCError, margin_events, negative_populations, qc_sample, raw_checks, time_qc
from treganalysis.qc import _asinh, _bin_starts, _json_numbers, _kept_subsample, _raw_checks, _time_bins  # vectorised pieces, checked directly
from treganalysis.sample import Sample, Spillover
from treganalysis.simulate import SampleSpec, _write_sample, load_config, simulate_events

# -- helpers ------------------------------------------------------------------------------------


def acquisition(n: int = 60_000, seed: int = 0, seconds: float = 100.0):
    """A stationary acquisition: uniform times over ``seconds``, one channel with a negative
    population at 0 and a bright one (30%) at 3 (arcsinh-like units, sd 0.3)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, seconds, n))
    bright = rng.random(n) < 0.3
    x = np.where(bright, rng.normal(3.0, 0.3, n), rng.normal(0.0, 0.3, n))
    return rng, t, x, bright


def thinned(t: np.ndarray, rng: np.random.Generator, windows, keep: float = 0.1) -> np.ndarray:
    """Events to drop so that only ``keep`` of them remain inside each (start, stop) window:
    the event rate of a clog."""
    drop = np.zeros(t.size, dtype=bool)
    for start, stop in windows:
        drop |= (t >= start) & (t < stop) & (rng.random(t.size) >= keep)
    return drop


def runs(record: dict) -> list[tuple[int, int]]:
    return [(r["first_bin"], r["last_bin"]) for r in record["removed_runs"]]


def simulated(folder: Path, name: str, *, n: int = 30_000, seed: int = 0, **artefacts):
    """A simulated sample written and read back: (sample, simulated events)."""
    cfg = load_config()
    rng = np.random.default_rng(seed)
    spec = SampleSpec(n_events=n, cd4=dict(cfg["cd4"]["patient"]), **artefacts)
    sim = simulate_events(spec, cfg, rng)
    path = folder / f"{name}.fcs"
    _write_sample(path, sim.events, cfg, rng, name, 0)
    return read_fcs(path), sim


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("qc")
    return {
        "clean": simulated(folder, "clean", seed=1),
        "margin": simulated(folder, "margin", seed=2, margin=True),
        "clog": simulated(folder, "clog", n=50_000, seed=3, clog=True),
        "small": simulated(folder, "small", n=1_500, seed=4),
        "fewer": simulated(folder, "fewer", n=15_000, seed=5),
    }


def gating_channels(sample: Sample) -> list[str]:
    return ["FSC-A", *sample.fluorescence_channels]


# -- margins ------------------------------------------------------------------------------------


def test_margin_events_counts_events_at_the_ceiling_per_channel():
    rng = np.random.default_rng(0)
    events = rng.uniform(0.0, 900.0, (1000, 4)).astype(np.float32)
    events[:10, 0] = 1023.0  # at $PnR - 1
    events[5:25, 1] = 1023.5  # above it (a ceiling of 1024 written as float)
    events[30:40, 1] = 1022.9  # just below: kept
    events[50:60, 2] = 1023.0  # a channel that is not checked
    events[70:75, 3] = 5000.0  # a channel without $PnR is not checked
    sample = Sample(events, ["FSC-A", "B1-A", "B2-A", "B3-A"], ["", "CD4", "CD8", "CD3"], ranges=[1024, 1024, 1024, 0])
    keep, removed = margin_events(sample, ["FSC-A", "B1-A", "B3-A"])
    assert removed == {"FSC-A": 10, "B1-A": 20}
    expected = np.ones(1000, dtype=bool)
    expected[:25] = False  # 0-9 and 5-24 overlap: an event is removed once
    np.testing.assert_array_equal(keep, expected)
    assert keep.sum() == 975
    # a marker name ($PnS) is accepted too
    _, by_marker = margin_events(sample, ["CD4"])
    assert by_marker == {"CD4": 20}


# -- time QC on planted artefacts ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_time_qc_keeps_a_stationary_acquisition_completely(seed):
    rng, t, x, _ = acquisition(seed=seed)
    y = np.where(rng.random(t.size) < 0.5, rng.normal(2.0, 0.2, t.size), rng.normal(-0.2, 0.2, t.size))
    keep, record = time_qc(t, {"A": x, "B": y})
    assert keep.all()
    assert record["flagged"] == [] and record["removed"] == [] and record["removed_runs"] == []
    assert record["removed_events"] == 0


def test_time_qc_record_holds_bins_rate_and_population_means():
    rng, t, x, bright = acquisition(n=60_000)
    keep, record = time_qc(t, {"A": x})
    assert record["bins"] == 120  # 60,000 events / 500 per bin
    edges = np.asarray(record["edges"])
    assert edges.size == 121  # (values may be rounded for JSON: compared to 6 digits)
    assert edges[0] == pytest.approx(t.min(), rel=1e-5) and edges[-1] == pytest.approx(t.max(), rel=1e-5)
    rate = np.asarray(record["rate"], dtype=np.float64)
    assert rate.size == 120
    assert np.sum(rate * np.diff(edges)) == pytest.approx(60_000, rel=1e-3)  # events per time unit
    assert np.median(rate) == pytest.approx(600.0, rel=0.05)  # 60,000 events over 100 s
    signal = record["signals"]["A"]
    assert len(signal["cuts"]) == 1 and 1.0 < signal["cuts"][0] < 2.0  # the valley between 0 and 3
    means = np.asarray(signal["means"], dtype=np.float64)  # population x bin
    assert means.shape == (2, 120)
    assert np.allclose(means[0], 0.0, atol=0.06) and np.allclose(means[1], 3.0, atol=0.08)
    json.dumps(record)  # JSON-ready


@pytest.mark.parametrize("seed", range(4))
def test_bins_of_a_forward_clock_are_the_per_event_bins(seed):
    # float32 times with ties, gaps and values on bin edges: the bisection finds the same bin
    # of every event as the per-event formula
    rng = np.random.default_rng(seed)
    n, n_bins = 5000, 37
    time = np.sort(rng.integers(0, 900, n).astype(np.float32) * np.float32(0.25))
    lo, hi = float(time[0]), float(time[-1])
    starts = _bin_starts(time, lo, hi, n_bins)
    per_event = _time_bins(time.astype(np.float64), lo, hi, n_bins)
    assert starts[0] == 0 and starts[-1] == n
    assert np.array_equal(np.repeat(np.arange(n_bins), np.diff(starts)), per_event)


def test_time_qc_gives_the_same_result_for_a_clock_that_steps_back_once():
    # one event's time stepped back to the start forces the per-event bins; the same event at
    # the start of the file (the clock running forward) must give the same bins and removal
    rng = np.random.default_rng(5)
    n = 20_000
    time = np.sort(rng.uniform(0, 100, n)).astype(np.float32)
    signal = rng.normal(3.0, 0.3, n).astype(np.float32)
    signal[time > 85] += 1.0  # a late shift: bins removed
    forward = time_qc(time, {"FL1": signal})
    moved = np.concatenate(([time[0]], time[1:]))
    moved[n // 2], moved[0] = moved[0], moved[n // 2]
    swapped = signal.copy()
    swapped[n // 2], swapped[0] = swapped[0], swapped[n // 2]
    backward = time_qc(moved, {"FL1": swapped})
    assert forward[1]["removed"] and forward[1]["removed"] == backward[1]["removed"]
    assert forward[1]["edges"] == backward[1]["edges"] and forward[1]["rate"] == backward[1]["rate"]
    keep = backward[0].copy()
    keep[n // 2], keep[0] = keep[0], keep[n // 2]
    assert np.array_equal(forward[0], keep)


def test_time_qc_removes_a_clog():
    rng, t, x, _ = acquisition()
    drop = thinned(t, rng, [(40.0, 50.0)])  # 10 s at a tenth of the rate
    t, x = t[~drop], x[~drop]
    keep, record = time_qc(t, {"A": x}, max_bins=100)  # 100 bins of 1 s
    assert runs(record) == [(39, 50)] or runs(record) == [(39, 49)] or runs(record) == [(40, 49)]
    run = record["removed_runs"][0]
    assert run["why"] == ["event rate"]
    assert run["start"] <= 40.0 and run["stop"] >= 50.0
    inside = (t >= 40.0) & (t < 50.0)
    assert not keep[inside].any()  # every event of the clog is removed ...
    assert keep[(t < 38.0) | (t >= 52.0)].all()  # ... and nothing far from it
    assert record["removed_events"] == int((~keep).sum())


def test_time_qc_removes_a_signal_shift_of_one_population_in_the_last_bins():
    rng, t, x, bright = acquisition()
    shifted = bright & (t >= 85.0)
    x = x.copy()
    x[shifted] -= 0.3  # the bright population loses ~25% of its signal in the last 15 s
    keep, record = time_qc(t, {"A": x}, max_bins=100)
    assert len(record["removed_runs"]) == 1
    run = record["removed_runs"][0]
    assert run["why"] == ["A signal"]
    assert run["last_bin"] == 99 and run["first_bin"] in (83, 84, 85)
    assert not keep[t >= 85.0].any()
    assert keep[t < 83.0].all()
    # the negative population did not move: its means are not what was flagged
    means = np.asarray(record["signals"]["A"]["means"], dtype=np.float64)
    assert np.ptp(means[0]) < 0.1 and means[1, 90:].mean() == pytest.approx(2.7, abs=0.05)


def test_time_qc_respects_consecutive_bins():
    rng, t, x, _ = acquisition(seed=1)
    drop = thinned(t, rng, [(40.0, 42.0)])  # 2 s thinned: a short run of deviating bins
    t, x = t[~drop], x[~drop]
    keep, record = time_qc(t, {"A": x}, max_bins=100)
    flagged = record["flagged"]
    assert 3 <= len(flagged) < DEFAULTS["consecutive_bins"]
    assert flagged == list(range(flagged[0], flagged[-1] + 1))  # one run ...
    assert keep.all() and record["removed_runs"] == []  # ... shorter than 5 bins: kept
    keep, record = time_qc(t, {"A": x}, max_bins=100, consecutive_bins=len(flagged))
    assert runs(record) == [(flagged[0], flagged[-1])]
    assert not keep[(t >= 40.0) & (t < 42.0)].any()
    keep, record = time_qc(t, {"A": x}, max_bins=100, consecutive_bins=len(flagged) + 1)
    assert keep.all()


@pytest.mark.parametrize("gap, joined", [(6.0, True), (8.0, False)])
def test_time_qc_joins_runs_separated_by_short_gaps(gap, joined):
    rng, t, x, _ = acquisition(seed=1)
    drop = thinned(t, rng, [(40.0, 42.0), (42.0 + gap, 44.0 + gap)])  # two short clogs
    t, x = t[~drop], x[~drop]
    keep, record = time_qc(t, {"A": x}, max_bins=100)
    flagged = np.asarray(record["flagged"])
    split = np.flatnonzero(np.diff(flagged) > 1)
    assert split.size == 1  # two runs of flagged bins, each shorter than 5
    first, second = flagged[: split[0] + 1], flagged[split[0] + 1 :]
    assert first.size < 5 and second.size < 5
    unflagged_between = second[0] - first[-1] - 1
    if joined:
        assert unflagged_between == 4  # closer than consecutive_bins: joined, gap bins included
        assert runs(record) == [(first[0], second[-1])]
        assert record["removed"] == list(range(first[0], second[-1] + 1))
    else:
        assert unflagged_between == 6
        assert record["removed_runs"] == [] and keep.all()


def test_time_qc_judges_signals_on_kept_events_only():
    rng, t, x, bright = acquisition()
    x = x.copy()
    late = t >= 85.0
    x[late & bright] += 0.5  # e.g. events at a margin, set aside before time QC
    keep, record = time_qc(t, {"A": x}, max_bins=100, keep=~(late & bright))
    assert keep.all()  # without those events the signal is flat
    keep, record = time_qc(t, {"A": x}, max_bins=100)
    assert not keep[late].any()


@pytest.mark.parametrize("time", [np.arange(150.0), np.full(5000, 7.0), np.zeros(0)])
def test_time_qc_skips_too_few_events_or_no_time_span(time):
    keep, record = time_qc(time, {"A": np.zeros(time.size)})
    assert keep.shape == time.shape and keep.all()
    assert "skipped" in record and record["removed_events"] == 0 and record["removed_runs"] == []


# -- over-compensation --------------------------------------------------------------------------


def test_negative_populations_on_synthetic_values():
    rng = np.random.default_rng(0)
    n = 100_000
    unstained = rng.normal(0.0, 100.0, n)
    over = unstained.copy()
    over[: n // 10] -= 3000.0  # 10% of the events pushed far below zero
    events = np.column_stack([unstained, over]).astype(np.float32)
    sample = Sample(events, ["B1-A", "B2-A"], ["CD4", "CD8"], ranges=[262144, 262144])
    found = negative_populations(sample, ["B1-A", "B2-A"])
    assert found["B1-A"]["spread"] == pytest.approx(100.0, rel=0.05)
    assert found["B1-A"]["limit"] == pytest.approx(-6 * found["B1-A"]["spread"])
    assert found["B1-A"]["share"] < 1e-4
    assert found["B2-A"]["share"] == pytest.approx(0.10, abs=0.005)
    # a keep mask restricts the events judged
    kept = negative_populations(sample, ["B2-A"], keep=np.arange(n) >= n // 10)
    assert kept["B2-A"]["share"] < 1e-4


def test_negative_populations_flags_an_over_compensated_channel(samples):
    sample, _ = samples["clean"]
    fluorescence = sample.fluorescence_channels
    right = negative_populations(compensate(sample), fluorescence)
    assert set(right) == set(fluorescence)
    assert max(v["share"] for v in right.values()) < 0.001
    matrix = sample.spillover.matrix.copy()
    off = ~np.eye(len(matrix), dtype=bool)
    matrix[off] *= 2.0  # every spillover doubled: CD4 PerCP-Cy5.5 over-subtracted from PE-Cy7 (CD8)
    wrong = compensate(sample, Spillover(matrix, sample.spillover.channels, "doubled"))
    found = negative_populations(wrong, fluorescence)
    assert found["YG780-A"]["share"] > 0.015
    assert found["B695-A"]["share"] < 0.001  # nothing spills into CD4's detector much
    result = qc_sample(sample, wrong, gating_channels(sample))
    assert result.status == "warn"
    reason = next(r for r in result.reasons if "over-compensation" in r)
    assert "YG780-A" in reason and "B695-A" not in reason
    assert result.record["compensation"]["source"] == "doubled"
    assert result.record["compensation"]["negative"]["YG780-A"]["share"] == pytest.approx(found["YG780-A"]["share"])


# -- the sample status --------------------------------------------------------------------------


def test_qc_sample_passes_a_clean_sample(samples):
    sample, _ = samples["clean"]
    result = qc_sample(sample, compensate(sample), gating_channels(sample))
    assert result.status == "pass" and result.reasons == []
    assert result.keep.all()
    record = result.record
    assert record["events"] == {"total": 30_000, "kept": 30_000, "removed": 0, "removed_share": 0.0, "nonfinite": 0}
    assert record["time"]["channel"] == "Time" and record["time"]["unit"] == "s"
    assert record["time"]["removed_runs"] == [] and record["time"]["bins"] == 60
    assert set(record["time"]["signals"]) == set(sample.fluorescence_channels)
    assert record["compensation"]["applied"] is True
    assert record["settings"] == DEFAULTS
    json.dumps(record)


def test_qc_sample_warns_on_margin_events(samples):
    sample, sim = samples["margin"]
    result = qc_sample(sample, compensate(sample), gating_channels(sample))
    assert result.status == "warn"
    margins = result.record["margins"]
    assert margins["removed"]["FSC-A"] >= sim.record["margin_events"] > 0.01 * sample.n_events
    saturated = sample.column("FSC-A") >= 262143
    assert not result.keep[saturated].any()
    assert margins["removed_events"] == int((~result.keep).sum())
    reason = next(r for r in result.reasons if "ceiling" in r)
    share = 100 * margins["removed_events"] / sample.n_events
    assert reason.startswith(f"{share:.1f}% of events at a channel's ceiling") and "FSC-A" in reason
    # below the warn level the margin events are still removed, without a warning
    quiet = qc_sample(sample, compensate(sample), gating_channels(sample), {"warn_margins": 0.05})
    assert quiet.status == "pass" and not quiet.keep[saturated].any()


def test_qc_sample_status_by_share_removed(samples):
    sample, _ = samples["margin"]
    comp = compensate(sample)
    share = qc_sample(sample, comp, gating_channels(sample)).record["events"]["removed_share"]
    assert 0.01 < share < 0.04
    failed = qc_sample(sample, comp, gating_channels(sample), {"fail_removed": share - 0.001})
    assert failed.status == "fail"
    assert any(r.startswith(f"QC removed {100 * share:.1f}% of events (fail above") for r in failed.reasons)
    warned = qc_sample(sample, comp, gating_channels(sample), {"warn_removed": share - 0.001, "warn_margins": 0.5})
    assert warned.status == "warn"
    assert any("(warn above" in r for r in warned.reasons)
    assert not any("ceiling" in r for r in warned.reasons)


def test_qc_sample_status_by_events_left(samples):
    small, _ = samples["small"]
    result = qc_sample(small, compensate(small), gating_channels(small))
    assert result.status == "fail"
    assert any(f"{int(result.keep.sum())} events left after QC (fail below 2000)" == r for r in result.reasons)
    fewer, _ = samples["fewer"]
    result = qc_sample(fewer, compensate(fewer), gating_channels(fewer))
    assert result.status == "warn"
    assert any("events left after QC (warn below 20000)" in r for r in result.reasons)
    result = qc_sample(fewer, compensate(fewer), gating_channels(fewer), {"warn_events": 10_000})
    assert result.status == "pass"
    result = qc_sample(fewer, compensate(fewer), gating_channels(fewer), {"fail_events": 20_000})
    assert result.status == "fail"


def test_qc_sample_refuses_unknown_settings(samples):
    sample, _ = samples["clean"]
    with pytest.raises(QCError) as info:
        qc_sample(sample, compensate(sample), gating_channels(sample), {"madd": 3, "bin_events": 1000})
    message = str(info.value)
    assert "unknown setting madd" in message and "bin_events," not in message.split("known:")[0]
    for key in DEFAULTS:
        assert key in message.split("known:")[1]


def test_qc_sample_without_time_channel_warns(samples):
    sample, _ = samples["clean"]
    no_time = dataclasses.replace(sample, events=sample.events[:, :-1], channels=sample.channels[:-1],
                                  markers=sample.markers[:-1], ranges=sample.ranges[:-1])
    assert no_time.time_channel is None
    result = qc_sample(no_time, compensate(no_time), gating_channels(no_time))
    assert result.status == "warn"
    assert result.reasons == ["no time channel: clogs and drifts cannot be found"]
    assert result.record["time"] == {"skipped": "no time channel"}
    # turned off in the configuration: recorded, no warning
    off = qc_sample(sample, compensate(sample), gating_channels(sample), {"time": False})
    assert off.status == "pass" and off.record["time"] == {"skipped": "time QC off in the configuration"}


def test_qc_sample_without_spillover_warns(samples):
    sample, _ = samples["clean"]
    bare = dataclasses.replace(sample, spillover=None, metadata={k: v for k, v in sample.metadata.items()
                                                                 if "SPILL" not in k})
    with pytest.warns(UserWarning, match="not compensated"):
        uncompensated = compensate(bare)
    result = qc_sample(bare, uncompensated, gating_channels(bare))
    assert result.status == "warn"
    assert "no spillover matrix: fluorescence was not compensated" in result.reasons
    assert result.record["compensation"]["applied"] is False
    # only scatter: nothing needed compensating
    assert qc_sample(bare, uncompensated, ["FSC-A"]).status == "pass"


def test_qc_sample_finds_a_simulated_clog(samples):
    sample, sim = samples["clog"]
    result = qc_sample(sample, compensate(sample), gating_channels(sample))
    assert result.status == "warn"
    start, stop = sim.record["clog_start_s"], sim.record["clog_stop_s"]
    [run] = result.record["time"]["removed_runs"]
    assert "event rate" in run["why"]
    assert run["start"] <= start + 0.6 and run["stop"] >= stop  # the window (bins of 1.2 s)
    assert run["stop"] - run["start"] < 2.5 * (stop - start)  # plus the running mean's margin
    time = sample.column("Time")
    assert not result.keep[(time >= start + 1.2) & (time < stop)].any()
    assert 0.05 < result.record["events"]["removed_share"] < 0.15
    assert any(r.startswith("time QC removed") and "event rate" in r for r in result.reasons)


# -- in gate_sample -----------------------------------------------------------------------------


def test_gate_sample_excludes_qc_removed_events_and_records_qc(samples):
    sample, sim = samples["clog"]
    result = gate_sample(sample)
    qc = result.qc
    assert qc is not None and qc.status == "warn"
    removed = ~qc.keep
    assert removed.sum() > 0.05 * sample.n_events
    for name, mask in result.masks.items():
        assert not (mask & removed).any(), name
    assert result.masks["cells"].sum() <= qc.keep.sum()
    assert set(result.populations["qc_status"]) == {"warn"}
    data = json.loads(result.to_json())
    assert data["qc"]["status"] == "warn" and data["qc"]["reasons"] == qc.reasons
    for key in ("margins", "time", "events", "compensation", "settings"):
        assert key in data["qc"]
    assert data["qc"]["events"]["kept"] == int(qc.keep.sum())
    assert data["qc"]["time"]["removed_runs"][0]["first_bin"] == qc.record["time"]["removed_runs"][0]["first_bin"]
    assert len(data["qc"]["time"]["edges"]) == data["qc"]["time"]["bins"] + 1


def test_gate_sample_passes_qc_settings_through(samples):
    sample, _ = samples["clog"]
    off = gate_sample(sample, {"qc": {"time": False}})
    assert off.qc.record["time"] == {"skipped": "time QC off in the configuration"}
    assert off.qc.status == "pass"
    assert off.qc.keep.sum() > gate_sample(sample).qc.keep.sum()
    with pytest.raises(QCError, match="unknown setting bins"):
        gate_sample(sample, {"qc": {"bins": 10}})


def test_gate_sample_excludes_margin_events(samples):
    sample, _ = samples["margin"]
    result = gate_sample(sample)
    assert result.qc.status == "warn"
    saturated = sample.column("FSC-A") >= 262143
    assert saturated.sum() > 0.01 * sample.n_events
    for name, mask in result.masks.items():
        assert not (mask & saturated).any(), name
    assert set(result.populations["qc_status"]) == {"warn"}


def test_a_file_without_events_fails_with_that_reason(samples):
    sample, _ = samples["clean"]
    empty = sample.with_events(sample.events[:0])
    result = qc_sample(empty, compensate(empty), gating_channels(empty))
    assert result.status == "fail" and result.reasons == ["the file holds no events"]
    assert result.keep.shape == (0,)


def test_events_with_nan_or_inf_are_removed_with_a_reason(samples):
    sample, _ = samples["clean"]
    events = sample.events.copy()
    events[::50, sample.index("SSC-A")] = np.nan
    events[1::50, sample.index("Time")] = np.inf
    broken = sample.with_events(events)
    result = qc_sample(broken, compensate(broken), gating_channels(broken))
    bad = ~np.isfinite(events).all(axis=1)
    assert not (result.keep & bad).any() and result.record["events"]["nonfinite"] == int(bad.sum())
    assert any(f"{int(bad.sum())} events with NaN or infinite values removed" in r for r in result.reasons)


# -- subsamples and the vectorised pieces (what QC finds must not depend on them) -----------------


def test_time_qc_follows_signals_on_at_most_bin_events_per_bin():
    rng, t, x, bright = acquisition(n=60_000)
    x = x.copy()
    x[bright & (t >= 85.0)] -= 0.3  # the drift of test_time_qc_removes_a_signal_shift...
    keep = np.ones(t.size, dtype=bool)
    keep[rng.choice(t.size, 1_000, replace=False)] = False  # e.g. margin events
    # 40 bins (max_bins caps them): the signals are followed on 40 x 500 kept events ...
    sub_keep, sub = time_qc(t, {"A": x}, keep, max_bins=40)
    assert sub["bins"] == 40 and sub["signal_events"] == 40 * 500
    full_keep, full = time_qc(t, {"A": x}, keep, max_bins=40, subsample=False)
    assert full["signal_events"] == 59_000
    # ... and find the same drift, with the same event rate (every event counted)
    assert runs(sub) == runs(full) and sub["removed_runs"][0]["why"] == ["A signal"]
    np.testing.assert_array_equal(sub_keep, full_keep)
    assert sub["rate"] == full["rate"]
    sub_means = np.asarray(sub["signals"]["A"]["means"], dtype=np.float64)
    full_means = np.asarray(full["signals"]["A"]["means"], dtype=np.float64)
    assert np.allclose(sub_means, full_means, atol=0.05)  # 500 instead of 1,475 per bin
    # without a cap on the bins there are as many as bin_events promises: nothing to subsample
    _, record = time_qc(t, {"A": x}, keep)
    assert record["bins"] == 120 and record["signal_events"] == 59_000


@pytest.mark.parametrize("seed", range(3))
def test_time_qc_subsample_is_the_full_computation_when_there_is_nothing_to_subsample(seed):
    # 15,000 events: 30 bins x 500 events and fewer than 20,000 values for the cuts
    rng, t, x, bright = acquisition(n=15_000, seed=seed)
    x = x.copy()
    x[bright & (t >= 80.0)] -= 0.4
    keep = rng.random(t.size) > 0.02
    sub_keep, sub = time_qc(t, {"A": x, "B": -x}, keep)
    full_keep, full = time_qc(t, {"A": x, "B": -x}, keep, subsample=False)
    assert sub == full and sub["signal_events"] == int(keep.sum())
    np.testing.assert_array_equal(sub_keep, full_keep)
    assert sub["removed_runs"]  # the shift was found


def test_time_qc_applies_the_transform_to_the_followed_values_only():
    rng, t, x, bright = acquisition(n=40_000)
    raw = np.sinh(x).astype(np.float32) * 150  # what arcsinh(x / 150) turns back into x
    raw[bright & (t >= 85.0)] *= 0.7
    _, given = time_qc(t, {"A": _asinh(raw, 150.0)}, max_bins=100)
    _, transformed = time_qc(t, {"A": raw}, max_bins=100, transform=lambda v: _asinh(v, 150.0))
    assert transformed == given and transformed["removed_runs"]


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_asinh_matches_numpys_arcsinh(dtype, rtol):
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000) * 10.0 ** rng.uniform(-6, 7, 20_000)
    x = np.concatenate([x, [0.0, -0.0, 1e-30, -1e-30, 150.0, -150.0, 3e38, -3e38, 1e25]]).astype(dtype)
    got = _asinh(x, 150.0)
    assert got.dtype == dtype
    expected = np.arcsinh(x.astype(np.float64) / 150.0)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    assert np.isnan(_asinh(np.array([np.nan], dtype=dtype), 150.0)).all()


def test_json_numbers_round_as_formatting_does():
    rng = np.random.default_rng(1)
    values = rng.normal(size=20_000) * 10.0 ** rng.uniform(-9, 12, 20_000)
    values = np.concatenate([values, [0.0, 1.0, 0.5, 1234.5, 99995.0, 1e-300, 1e300, np.nan, np.inf, -np.inf]])
    for digits in (4, 6):
        expected = [float(f"{v:.{digits}g}") if np.isfinite(v) else None for v in values]
        assert _json_numbers(values, digits) == expected
    assert _json_numbers(np.array([[1.23456, np.nan], [2.0, 3.0]]), 4) == [[1.235, None], [2.0, 3.0]]
    assert _json_numbers(np.empty(0), 4) == []


@pytest.mark.parametrize("order", ["C", "F"])
def test_raw_checks_match_a_column_by_column_computation(order):
    """Margins, NaN/Inf events and the time column from one pass over blocks of events, with
    margin events and non-finite values in several blocks and in the same block and channel."""
    rng = np.random.default_rng(0)
    n = 50_000  # 4 blocks
    events = rng.uniform(0.0, 1000.0, (n, 5)).astype(np.float32)
    events[:, 4] = np.sort(rng.uniform(0.0, 60.0, n))  # time
    events[rng.choice(n, 40, replace=False), 0] = 1023.0
    events[rng.choice(n, 30, replace=False), 1] = 2000.0
    events[20_000:20_010, 1] = np.nan  # a block with NaN and margin events in one channel
    events[20_005, 1] = 1023.0
    events[[5, 49_999], 2] = np.inf
    events[33_000, 3] = -np.inf
    events[40_000, 2] = 1023.0  # channel 2 is not checked
    events = np.asarray(events, order=order)
    sample = Sample(events, ["FSC-A", "B1-A", "B2-A", "B3-A", "Time"], ["", "CD4", "CD8", "CD3", ""],
                    ranges=[1024, 1024, 1024, 0, 1024])
    keep, removed, finite, time = _raw_checks(sample, ["FSC-A", "B1-A", "B3-A"], "Time")
    expected_keep = (events[:, 0] < 1023) & ~(events[:, 1] >= 1023)
    assert removed == {"FSC-A": 40, "B1-A": int((events[:, 1] >= 1023).sum())}  # B3-A has no $PnR
    np.testing.assert_array_equal(keep, expected_keep)
    np.testing.assert_array_equal(finite, np.isfinite(events).all(axis=1))
    assert (~finite).sum() == 12  # 9 NaN (one of the 10 is a margin event instead), 3 infinities
    np.testing.assert_array_equal(time, events[:, 4])
    assert margin_events(sample, ["FSC-A", "B1-A", "B3-A"])[1] == removed


@pytest.mark.parametrize("keep_some", [False, True])
def test_negative_populations_spread_from_a_subsample_share_over_all_kept_events(keep_some):
    rng = np.random.default_rng(3)
    n = 400_000
    x = rng.normal(0.0, 100.0, n)
    x[rng.random(n) < 0.03] -= 2000.0  # an over-compensated population
    events = np.column_stack([x, rng.normal(0.0, 50.0, n)]).astype(np.float32)
    keep = rng.random(n) > 0.1 if keep_some else None
    results = {}
    for order in ("C", "F"):
        sample = Sample(np.asarray(events, order=order), ["B1-A", "B2-A"], ["CD4", "CD8"], ranges=[262144, 262144])
        results[order] = negative_populations(sample, ["B1-A", "B2-A"], keep)
        full = negative_populations(sample, ["B1-A", "B2-A"], keep, max_events=None)
    assert results["C"] == results["F"]  # the layout changes nothing
    kept = events if keep is None else events[keep]
    for j, channel in enumerate(["B1-A", "B2-A"]):
        got = results["C"][channel]
        # the share counts every kept event below the limit
        assert got["share"] == float(np.mean(kept[:, j] < got["limit"]))
        # the spread from 100,000 of the kept events is the full one within a few percent
        assert got["spread"] == pytest.approx(full[channel]["spread"], rel=0.03)
        # and the full computation is np.quantile over all negatives
        negative = kept[:, j][kept[:, j] < 0]
        assert full[channel]["spread"] == pytest.approx(float(np.quantile(-negative, 0.10)) / 0.1257, rel=1e-6)
    assert results["C"]["B1-A"]["share"] == pytest.approx(0.03, abs=0.003)


def test_qc_sample_is_the_same_for_row_and_column_major_events(samples):
    sample, _ = samples["clog"]
    comp = compensate(sample)
    rows = qc_sample(sample, comp.with_events(np.ascontiguousarray(comp.events)), gating_channels(sample))
    columns = qc_sample(sample, comp.with_events(np.asfortranarray(comp.events)), gating_channels(sample))
    raw_columns = qc_sample(sample.with_events(np.asfortranarray(sample.events)), comp, gating_channels(sample))
    for other in (columns, raw_columns):
        np.testing.assert_array_equal(rows.keep, other.keep)
        assert (rows.status, rows.reasons) == (other.status, other.reasons)
        assert json.dumps(rows.record) == json.dumps(other.record)
    # 50,000 events in 100 bins: every kept event is followed
    assert rows.record["time"]["signal_events"] == 50_000 - rows.record["margins"]["removed_events"]


def test_qc_sample_with_raw_checks_done_first_is_the_same(samples):
    """gate_sample checks the raw events, frees them, then runs the rest of QC on the
    compensated copy alone: the result must not change, and ``checked`` must not be modified."""
    sample, _ = samples["clog"]
    margined = sample.with_events(sample.events.copy())
    margined.events[::50, sample.index("FSC-A")] = sample.ranges[sample.index("FSC-A")]  # margin events
    margined.events[7, 3] = np.nan
    comp = compensate(margined)
    whole = qc_sample(margined, comp, gating_channels(margined))
    checked = raw_checks(margined, gating_channels(margined))
    before = checked.keep.copy()
    split = qc_sample(comp, comp, gating_channels(margined), checked=checked)
    np.testing.assert_array_equal(whole.keep, split.keep)
    assert (whole.status, whole.reasons) == (split.status, split.reasons)
    assert json.dumps(whole.record) == json.dumps(split.record)
    np.testing.assert_array_equal(checked.keep, before)
    assert whole.record["margins"]["removed_events"] > 0 and whole.record["events"]["nonfinite"] == 1
    off = raw_checks(margined, gating_channels(margined), {"time": False})
    assert off.time is None
    no_time = qc_sample(comp, comp, gating_channels(margined), {"time": False}, checked=off)
    assert no_time.record["time"] == {"skipped": "time QC off in the configuration"}
    # checked with time QC off, then run with it on: the (uncompensated) time of the compensated sample
    late = qc_sample(comp, comp, gating_channels(margined), checked=off)
    assert json.dumps(late.record) == json.dumps(whole.record)
    # the checks of another sample are refused, not applied
    other = raw_checks(margined.with_events(margined.events[:100]), gating_channels(margined))
    with pytest.raises(QCError, match="raw checks are of 100 events"):
        qc_sample(comp, comp, gating_channels(margined), checked=other)


@pytest.mark.parametrize("n", [0, 1, 100, 65_535, 65_536, 65_537, 200_001])
@pytest.mark.parametrize("removed", [0.0, 0.001, 0.5, 0.999, 1.0])
def test_kept_subsample_is_every_kth_kept_event_across_blocks(n, removed):
    """Numbered block by block, the kept events chosen are those of the plain definition:
    positions ``floor(i * kept / m)`` of the kept events in file order."""
    keep = np.random.default_rng(n).random(n) >= removed
    kept = np.flatnonzero(keep)
    for m in (None, 1, 7, 1000, 70_000, kept.size, kept.size + 1):
        got = _kept_subsample(keep, m)
        if kept.size == n and (m is None or n <= m):
            assert got == slice(None)
            continue
        want = kept if m is None or kept.size <= m else kept[np.arange(m) * kept.size // m]
        assert got.dtype == np.intp
        np.testing.assert_array_equal(got, want)
