"""The cohort simulator: truth matches what was asked for, files are standard, runs are reproducible.

Every statistical check uses a fixed seed and a bound of about four standard errors, so a pass is
not luck and a failure means the model or its bookkeeping is wrong.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from treganalysis.cli import main
from treganalysis.compensation import compensate
from treganalysis.fcs import read_fcs, write_fcs
from treganalysis.sample import Spillover
from treganalysis.simulate import (
    CLASSES, DEFAULTS, PRESETS, SampleSpec, SimulationError, class_fractions, cohort_plan, il2_effect, load_config,
    population_masks, simulate_cohort, simulate_events, spillover_matrix,
)

CONFIG = load_config()
MARKERS = list(CONFIG["panel"])
DETECTORS = [CONFIG["panel"][m][1] for m in MARKERS]
FLUORS = [CONFIG["panel"][m][0] for m in MARKERS]
PNS = [f"{m} {CONFIG['panel'][m][0]}" for m in MARKERS]
CHANNELS = ["FSC-A", "FSC-H", "SSC-A", *DETECTORS, "Time"]
FL = slice(3, 3 + len(MARKERS))  # fluorescence columns of the simulator's event matrix
TOP = 262143.0
CODE = {name: i for i, name in enumerate(CLASSES)}
CD4_CLASSES = ("treg", "cd25neg_foxp3pos", "activated_tcon", "resting_tcon")
ARTEFACTS = ("clog", "drift", "margin", "low_events", "tandem")


def within(count: float, n: float, p: float, k: float = 4.0) -> bool:
    """count is within k binomial standard deviations of n * p."""
    return abs(count - n * p) <= k * math.sqrt(n * p * (1.0 - p)) + 1e-9


def col(marker: str) -> int:
    return MARKERS.index(marker)


def tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def labels_of(out: Path, sample_id: str) -> np.ndarray:
    return np.load(out / "truth" / f"{sample_id}.labels.npy")


def patient_cd4(treg: float | None = None) -> dict:
    cd4 = dict(CONFIG["cd4"]["patient"])
    if treg is not None:
        cd4["treg"] = treg
    return cd4


def write_sim(path: Path, sim, matrix: np.ndarray | None = None) -> Path:
    """The events as the simulator's files hold them, with the true matrix as $SPILLOVER."""
    matrix = spillover_matrix(CONFIG) if matrix is None else matrix
    return write_fcs(path, sim.events, CHANNELS, ["", "", "", *PNS, ""],
                     ranges=[262144.0] * (len(CHANNELS) - 1) + [12000.0],
                     spillover=Spillover(matrix, tuple(DETECTORS), "simulated"), keywords={"$TIMESTEP": "0.01"})


def propagated_sd(dye: np.ndarray, matrix: np.ndarray, gains: np.ndarray | None = None) -> np.ndarray:
    """Per event and marker: sd of (compensated - dye) under the documented noise model.

    detector noise has variance electronic_sd**2 + photon_k * max(signal, 0); compensation
    multiplies it by inv(S), so the variances add with the squared inverse's entries.
    """
    noise = CONFIG["noise"]
    signal = dye.astype(np.float64) @ matrix
    if gains is not None:
        signal = signal * gains
    var = noise["electronic_sd"] ** 2 + noise["photon_k"] * np.maximum(signal, 0.0)
    return np.sqrt(var @ np.linalg.inv(matrix) ** 2)


# -- shared cohorts (module scope: simulated once) -------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """12 patients (2 on placebo) and 2 healthy controls, 20,000 events per sample."""
    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(out, subjects=12, visits="il2-course", events=20_000, seed=11, healthy=2, placebo=2)
    return out


@pytest.fixture(scope="module")
def big_cohort(tmp_path_factory) -> Path:
    """200 patients with the minimum event count: for the subject-level effect distribution."""
    out = tmp_path_factory.mktemp("big")
    simulate_cohort(out, subjects=200, visits="il2-course", events=100, seed=5)
    return out


@pytest.fixture(scope="module")
def small_controls(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("controls")
    simulate_cohort(out, subjects=2, events=2000, seed=3, healthy=1, controls=True)
    return out


# -- class fractions and realised truth --------------------------------------------------------


def test_class_fractions_follow_the_config_hierarchy():
    cd4 = patient_cd4()
    f = dict(zip(CLASSES, class_fractions(CONFIG, cd4)))
    assert sum(f.values()) == pytest.approx(1.0)
    for name, share in CONFIG["fractions"].items():
        assert f[name] == pytest.approx(share)
    lymph = 1.0 - sum(CONFIG["fractions"].values())
    cd4_total = sum(f[c] for c in CD4_CLASSES)
    assert cd4_total == pytest.approx(lymph * CONFIG["lymphocytes"]["t"] * CONFIG["t_cells"]["cd4"])
    assert f["treg"] / cd4_total == pytest.approx(cd4["treg"])
    assert f["activated_tcon"] / cd4_total == pytest.approx(cd4["activated_tcon"])
    assert f["b_cell"] == pytest.approx(lymph * CONFIG["lymphocytes"]["b_cell"])
    assert f["cd8_t"] == pytest.approx(lymph * CONFIG["lymphocytes"]["t"] * CONFIG["t_cells"]["cd8_t"])


def test_class_fractions_refuse_impossible_shares():
    with pytest.raises(SimulationError, match="more than 1"):
        class_fractions(CONFIG, {"treg": 0.5, "cd25neg_foxp3pos": 0.3, "activated_tcon": 0.3})
    crowded = load_config(overrides={"fractions": {"debris": 0.5, "dead": 0.6}})
    with pytest.raises(SimulationError, match="no lymphocytes"):
        class_fractions(crowded, patient_cd4())


def test_realised_class_counts_match_the_expected_fractions():
    n = 200_000
    cd4 = patient_cd4(0.08)
    sim = simulate_events(SampleSpec(n_events=n, cd4=cd4), CONFIG, np.random.default_rng(20240))
    assert sim.labels.dtype == np.uint8 and sim.labels.shape == (n,)
    assert sim.events.shape == (n, 3 + len(MARKERS) + 1) and sim.events.dtype == np.float32
    assert sim.dye.shape == (n, len(MARKERS))
    counts = np.bincount(sim.labels, minlength=len(CLASSES))
    assert counts.size == len(CLASSES)
    for name, count, p in zip(CLASSES, counts, class_fractions(CONFIG, cd4)):
        assert within(count, n, p), (name, count, n * p)
    # labels are shuffled: no class sits in one block of the file
    treg = np.flatnonzero(sim.labels == CODE["treg"])
    assert treg.min() < n // 10 and treg.max() > n - n // 10


def test_cohort_truth_counts_and_treg_share_are_within_sampling_error(cohort):
    truth = tsv(cohort / "truth.tsv")
    assert len(truth) == 12 * len(PRESETS["il2-course"]["days"]) + 2
    for row in truth.itertuples():
        kind = "healthy" if row.arm == "healthy" else "patient"
        cd4 = {**CONFIG["cd4"][kind], "treg": row.treg_pct_cd4_expected / 100}
        counts = np.array([getattr(row, f"n_{c}") for c in CLASSES])
        assert counts.sum() == row.n_events == 20_000
        for name, count, p in zip(CLASSES, counts, class_fractions(CONFIG, cd4)):
            assert within(count, row.n_events, p), (row.sample_id, name, count, row.n_events * p)
        n_cd4 = sum(getattr(row, f"n_{c}") for c in CD4_CLASSES)
        assert row.treg_pct_cd4 == pytest.approx(100 * row.n_treg / n_cd4, abs=1e-5)
        assert within(row.n_treg, n_cd4, row.treg_pct_cd4_expected / 100), row.sample_id


def test_labels_files_match_the_fcs_files(cohort):
    sheet = tsv(cohort / "samples.tsv")
    truth = tsv(cohort / "truth.tsv").set_index("sample_id")
    classes = tsv(cohort / "truth" / "classes.tsv")
    assert list(classes["class"]) == list(CLASSES) and list(classes["code"]) == list(range(len(CLASSES)))
    for row in sheet.itertuples():
        labels = labels_of(cohort, row.sample_id)
        sample = read_fcs(cohort / row.fcs)
        assert labels.dtype == np.uint8 and labels.ndim == 1
        assert labels.size == sample.n_events == truth.loc[row.sample_id, "n_events"]
        assert labels.max() < len(CLASSES)
        counts = np.bincount(labels, minlength=len(CLASSES))
        assert [truth.loc[row.sample_id, f"n_{c}"] for c in CLASSES] == counts.tolist()


def test_labels_are_in_file_order(cohort):
    # lymphocyte-class events sit in the lymphocyte scatter cloud, granulocytes at high SSC,
    # and dead cells are bright in LIVE DEAD: only true if labels and events line up row by row
    sample = read_fcs(cohort / "fcs" / "P01_D0.fcs")
    labels = labels_of(cohort, "P01_D0")
    ssc = sample.column("SSC-A")
    live_dead = sample.column("V525-A")
    cd19 = sample.column("V610-A")
    assert np.median(ssc[labels == CODE["granulocyte"]]) > 5 * np.median(ssc[labels == CODE["resting_tcon"]])
    assert np.median(live_dead[labels == CODE["dead"]]) > 10_000 > np.percentile(live_dead[labels == CODE["cd8_t"]], 99)
    assert np.median(cd19[labels == CODE["b_cell"]]) > 3000 > np.percentile(cd19[labels == CODE["nk"]], 99)


def test_population_masks_nest_like_the_gating_tree():
    labels = np.arange(len(CLASSES), dtype=np.uint8).repeat(3)
    m = population_masks(labels)
    order = ["cells", "singlets", "lymphocytes", "live", "cd3", "cd4"]
    for outer, inner in zip(order, order[1:]):
        assert not (m[inner] & ~m[outer]).any(), (inner, outer)
    assert not (m["treg"] & m["tcon"]).any()
    assert ((m["treg"] | m["tcon"]) == m["cd4"]).all()
    assert not (m["cd25neg_foxp3pos"] & ~m["tcon"]).any()
    assert set(np.unique(labels[m["cd4"]])) == {CODE[c] for c in CD4_CLASSES}
    assert set(np.unique(labels[~m["singlets"]])) == {CODE["debris"], CODE["doublet"]}
    assert set(np.unique(labels[m["lymphocytes"] & ~m["live"]])) == {CODE["dead"]}
    assert set(np.unique(labels[m["treg"]])) == {CODE["treg"]}


# -- the files: sample sheet, FCS keywords, FlowKit ------------------------------------------


def test_sample_sheet_is_in_the_workflow_format(cohort):
    sheet = tsv(cohort / "samples.tsv")
    assert list(sheet.columns[:5]) == ["sample_id", "subject", "timepoint", "day", "fcs"]
    assert set(sheet.columns) <= {"sample_id", "subject", "timepoint", "day", "fcs", "batch", "arm",
                                  "lymphocytes_per_ul", "role"}
    assert sheet["sample_id"].is_unique
    assert (sheet["timepoint"] == "D" + sheet["day"].astype(str)).all()
    for row in sheet.itertuples():
        assert not Path(row.fcs).is_absolute() and (cohort / row.fcs).is_file()
    patients = sheet[sheet["role"] == "patient"]
    assert sorted(patients["day"].unique()) == PRESETS["il2-course"]["days"]
    for subject, days in patients.groupby("subject")["day"]:
        assert sorted(days) == PRESETS["il2-course"]["days"], subject
    healthy = sheet[sheet["role"] == "healthy"]
    assert len(healthy) == 2 and (healthy["day"] == 0).all() and (healthy["arm"] == "healthy").all()
    assert sheet.groupby("subject")["lymphocytes_per_ul"].nunique().max() == 1
    assert sheet.groupby("day")["batch"].nunique().max() == 1  # one acquisition batch per study day
    assert sheet["batch"].nunique() == len(PRESETS["il2-course"]["days"])
    subjects = tsv(cohort / "subjects.tsv").set_index("subject")
    for row in sheet.itertuples():
        assert row.lymphocytes_per_ul == pytest.approx(subjects.loc[row.subject, "lymphocytes_per_ul"])
        assert row.arm == subjects.loc[row.subject, "arm"]


def test_the_plan_is_the_cohort_simulate_writes(cohort):
    """The workflow plans the demo's jobs from cohort_plan before anything is simulated; as plain
    dicts (as_frame=False, no pandas in Snakemake's process) it is the same plan."""
    plan = cohort_plan(12, "il2-course", healthy=2)
    written = tsv(cohort / "samples.tsv")[["sample_id", "subject", "day", "batch"]]
    pd.testing.assert_frame_equal(plan, written, check_dtype=False)
    assert cohort_plan(12, "il2-course", healthy=2, as_frame=False) == plan.to_dict("records")
    with pytest.raises(SimulationError, match="unknown visit schedule"):
        cohort_plan(2, "weekly", as_frame=False)


def test_fcs_keywords(cohort):
    path = cohort / "fcs" / "P02_D5.fcs"
    assert path.read_bytes()[:6] == b"FCS3.1"
    sample = read_fcs(path)
    assert sample.version == "3.1"
    assert sample.channels == CHANNELS
    assert sample.markers == ["", "", "", *PNS, ""]
    assert sample.ranges[:-1] == [262144.0] * (len(CHANNELS) - 1)
    assert float(sample.metadata["$TIMESTEP"]) == CONFIG["timestep"]
    assert int(sample.metadata["$TOT"]) == 20_000
    assert sample.spillover is not None
    assert list(sample.spillover.channels) == DETECTORS
    # the matrix that fits this batch: detector gains g turn S into diag(1/g) S diag(g)
    gains = batch_gains(cohort, tsv(cohort / "truth.tsv").set_index("sample_id").loc["P02_D5", "batch"])
    np.testing.assert_allclose(sample.spillover.matrix, spillover_matrix(CONFIG) * gains[None, :] / gains[:, None],
                               rtol=1e-12)
    assert not np.allclose(gains, 1.0)
    time = sample.column("Time")  # seconds: whole clock ticks x $TIMESTEP
    ticks = time / CONFIG["timestep"]
    assert (np.diff(time) >= 0).all() and np.allclose(ticks, np.round(ticks), atol=1e-3)
    assert 0 <= time[0] < 1.0 and CONFIG["acquisition_seconds"] - 1.0 < time[-1] <= CONFIG["acquisition_seconds"]
    assert sample.ranges[-1] * CONFIG["timestep"] >= time[-1]
    fl = sample.events[:, FL]
    assert fl.max() <= TOP and (fl < 0).any()  # linear float data keep negative values


def test_spillover_matrix_puts_each_spill_in_its_row_and_column():
    matrix = spillover_matrix(CONFIG)
    assert matrix.shape == (len(MARKERS), len(MARKERS))
    np.testing.assert_array_equal(np.diag(matrix), 1.0)
    assert matrix[FLUORS.index("FITC"), FLUORS.index("PE")] == 0.20  # FITC dye into the PE detector
    assert matrix[FLUORS.index("PE"), FLUORS.index("FITC")] == 0.015
    assert np.count_nonzero(matrix) == len(MARKERS) + sum(len(v) for v in CONFIG["spillover"].values())


def batch_gains(folder: Path, batch: str) -> np.ndarray:
    table = tsv(folder / "batches.tsv").set_index("batch")
    return np.array([table.loc[batch, f"gain_{d}"] for d in DETECTORS])


def test_spillover_keyword_modes(tmp_path):
    missing = tmp_path / "missing"
    simulate_cohort(missing, subjects=1, events=500, seed=1, config={"spillover_keyword": "missing"})
    sample = read_fcs(missing / "fcs" / "P01_D0.fcs")
    assert sample.spillover is None and "$SPILLOVER" not in sample.metadata
    perturbed = tmp_path / "perturbed"
    simulate_cohort(perturbed, subjects=1, events=500, seed=1, config={"spillover_keyword": "perturbed"})
    gains = batch_gains(perturbed, "B1")
    true = spillover_matrix(CONFIG) * gains[None, :] / gains[:, None]
    got = read_fcs(perturbed / "fcs" / "P01_D0.fcs").spillover.matrix
    np.testing.assert_array_equal(np.diag(got), 1.0)
    np.testing.assert_array_equal(got == 0, true == 0)
    off = true > 0
    off[np.diag_indices_from(off)] = False
    ratio = got[off] / true[off]
    assert ((ratio >= 0.7) & (ratio <= 1.3)).all() and not np.allclose(ratio, 1.0)
    with pytest.raises(SimulationError, match="spillover_keyword"):
        simulate_cohort(tmp_path / "bad", subjects=1, events=500, seed=1, config={"spillover_keyword": "maybe"})


def test_flowkit_reads_the_files_like_read_fcs(cohort, small_controls):
    fk = pytest.importorskip("flowkit")
    paths = [cohort / "fcs" / "P01_D0.fcs", cohort / "fcs" / "HC01_D0.fcs",
             small_controls / "controls" / "B1_single_PE.fcs", small_controls / "controls" / "B2_FMO_CD25.fcs"]
    for path in paths:
        ours = read_fcs(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FlowKit has nothing to complain about
            theirs = fk.Sample(path)
        raw = theirs.get_events(source="raw")
        assert raw.shape == ours.events.shape
        np.testing.assert_array_equal(raw.astype(np.float32), ours.events)
        assert list(theirs.pnn_labels) == ours.channels
        assert [s or "" for s in theirs.pns_labels] == ours.markers
        assert float(theirs.metadata["timestep"]) == CONFIG["timestep"]
        # FlowKit compensating with the file's $SPILLOVER agrees with compensate()
        theirs.apply_compensation(theirs.metadata["spillover"])
        comp = theirs.get_events(source="comp")
        np.testing.assert_allclose(compensate(ours).events, comp, rtol=1e-5, atol=0.02)


# -- compensation recovers the dye ---------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """50,000 events without batch gains or artefacts, written with the true $SPILLOVER."""
    sim = simulate_events(SampleSpec(n_events=50_000, cd4=patient_cd4()), CONFIG, np.random.default_rng(5))
    path = write_sim(tmp_path_factory.mktemp("plain") / "plain.fcs", sim)
    return sim, read_fcs(path)


def test_compensation_recovers_the_dye_within_the_noise_model(plain):
    sim, sample = plain
    comp = compensate(sample).events[:, FL].astype(np.float64)
    dye = sim.dye.astype(np.float64)
    residual = comp - dye
    sd = propagated_sd(dye, spillover_matrix(CONFIG))
    z = residual / sd
    n = len(z)
    for j, marker in enumerate(MARKERS):
        assert abs(z[:, j].mean()) < 4 / math.sqrt(n), marker
        assert 0.97 < z[:, j].std() < 1.03, (marker, z[:, j].std())
        # negatives: spread of the channel's own noise plus the spreading error of what spills in
        negative = np.abs(dye[:, j]) < 3 * CONFIG["panel"][marker][2]
        assert residual[negative, j].std() == pytest.approx(np.sqrt((sd[negative, j] ** 2).mean()), rel=0.05)
        assert np.corrcoef(comp[:, j], dye[:, j])[0, 1] > 0.99, marker


def test_without_compensation_the_spill_is_in_the_data(plain):
    sim, sample = plain
    dye = sim.dye.astype(np.float64)
    pe, fitc = col("CD25"), col("Ki-67")  # CD25 PE receives 20% of Ki-67 FITC
    raw_res = sample.events[:, 3 + pe] - dye[:, pe]
    comp_res = compensate(sample).events[:, 3 + pe] - dye[:, pe]
    slope_raw = np.polyfit(dye[:, fitc], raw_res, 1)[0]
    slope_comp = np.polyfit(dye[:, fitc], comp_res, 1)[0]
    assert slope_raw == pytest.approx(0.20, abs=0.01)
    assert abs(slope_comp) < 0.01
    assert raw_res.std() > 3 * comp_res.std()


def test_batch_gain_scales_the_detectors(tmp_path):
    gains = np.full(len(MARKERS), 1.25)
    spec = SampleSpec(n_events=20_000, cd4=patient_cd4(), gains=gains)
    sim = simulate_events(spec, CONFIG, np.random.default_rng(8))
    comp = compensate(read_fcs(write_sim(tmp_path / "g.fcs", sim))).events[:, FL].astype(np.float64)
    dye = sim.dye.astype(np.float64)
    z = (comp - 1.25 * dye) / propagated_sd(dye, spillover_matrix(CONFIG), gains)
    assert (np.abs(z.mean(0)) < 0.05).all() and ((z.std(0) > 0.97) & (z.std(0) < 1.03)).all()


def test_scatter_of_the_classes(plain):
    sim, _ = plain
    fsc_a, fsc_h, ssc = (sim.events[:, i].astype(np.float64) for i in range(3))
    scatter = CONFIG["scatter"]
    for name, kind in (("resting_tcon", "lymphocyte"), ("b_cell", "lymphocyte"), ("monocyte", "monocyte"),
                       ("granulocyte", "granulocyte"), ("dead", "dead")):
        members = sim.labels == CODE[name]
        fm, fs, sm, ss = scatter[kind]
        assert abs(fsc_a[members].mean() - fm) < 4 * fs / math.sqrt(members.sum()), name
        assert abs(ssc[members].mean() - sm) < 4 * ss / math.sqrt(members.sum()) + 1, name
    # doublets: FSC-A grows more than FSC-H, so FSC-H/FSC-A separates them from singlets
    ratio = fsc_h / fsc_a
    singlet = np.isin(sim.labels, [CODE[c] for c in ("b_cell", "nk", "cd8_t", "resting_tcon", "treg", "monocyte")])
    doublet = sim.labels == CODE["doublet"]
    ratio_mean = CONFIG["fsc_h_ratio"][0]
    assert np.median(ratio[singlet]) == pytest.approx(ratio_mean, rel=0.01)
    expected = ratio_mean * CONFIG["doublet"]["fsc_h"] / CONFIG["doublet"]["fsc_a"]
    assert np.median(ratio[doublet]) == pytest.approx(expected, rel=0.03)
    assert np.median(fsc_a[doublet]) > 1.5 * np.median(fsc_a[sim.labels == CODE["resting_tcon"]])
    assert (ratio[doublet] < 0.65).mean() > 0.95 and (ratio[singlet] > 0.65).mean() > 0.99
    debris = sim.labels == CODE["debris"]
    assert (fsc_a[debris] >= 0).all() and np.median(fsc_a[debris]) < 0.3 * np.median(fsc_a[singlet])


def test_separation_of_treg_is_not_perfect_but_gateable(plain):
    """CD25-high CD127-low CD4 events are mostly Tregs, and some true Tregs fall outside (CD25-dim)."""
    sim, sample = plain
    comp = compensate(sample).events[:, FL]
    cd4 = np.isin(sim.labels, [CODE[c] for c in CD4_CLASSES])
    treg = sim.labels == CODE["treg"]
    gate = cd4 & (comp[:, col("CD25")] > 1000) & (comp[:, col("CD127")] < 1100)
    recall = (gate & treg).sum() / treg.sum()
    precision = (gate & treg).sum() / gate.sum()
    assert 0.8 < recall < 0.97  # the CD25-dim Tregs (about 10%) are missed by a CD25 gate
    assert precision > 0.9


# -- IL-2 effect model ---------------------------------------------------------------------


def test_il2_effect_over_one_course():
    doses = PRESETS["il2-course"]["doses"]
    assert il2_effect(0, doses, 6.0, 0.5) == 0.0  # sampled before the first dose
    assert il2_effect(-3, doses, 6.0, 0.5) == 0.0
    assert il2_effect(2.5, doses, 6.0, 0.5) == pytest.approx(0.5)  # linear rise to day 5
    assert il2_effect(5, doses, 6.0, 0.5) == pytest.approx(1.0)  # the day after the last dose
    assert il2_effect(11, doses, 6.0, 0.5) == pytest.approx(0.5)  # one half-life later
    assert il2_effect(17, doses, 6.0, 0.5) == pytest.approx(0.25)
    assert il2_effect(12, doses, 6.0, 0.5) == pytest.approx(2 ** (-7 / 6))
    assert il2_effect(33, doses, 3.0, 0.5) == pytest.approx(2 ** (-28 / 3))


def test_il2_effect_maintenance_and_schedules():
    induction_then_one = [0, 1, 2, 3, 4, 15]
    assert il2_effect(16, induction_then_one, 6.0, 0.5) == pytest.approx(0.5)  # maintenance weight
    assert il2_effect(16, induction_then_one, 6.0, 0.2) == pytest.approx(2 ** (-11 / 6))  # induction tail wins
    assert il2_effect(22, induction_then_one, 6.0, 0.5) == pytest.approx(0.25)
    assert il2_effect(13, [10, 12], 6.0, 0.4) == pytest.approx(0.4)  # two doses are a maintenance course
    # every other day is one course (gaps of 2 days), peaking the day after its last dose
    assert il2_effect(13, PRESETS["he"]["doses"], 6.0, 0.5) == pytest.approx(1.0)
    assert il2_effect(28 + 5, PRESETS["charite"]["doses"], 6.0, 0.5) == pytest.approx(1.0)
    assert il2_effect(8, PRESETS["transreg"]["doses"], 6.0, 0.5) == pytest.approx(2 ** (-3 / 6))
    for preset in PRESETS.values():
        effects = [il2_effect(d, preset["doses"], 6.0, 0.5) for d in preset["days"]]
        assert effects[0] == 0.0 and all(0.0 <= e <= 1.0 for e in effects)


def test_truth_follows_the_effect_model(big_cohort):
    truth = tsv(big_cohort / "truth.tsv")
    subjects = tsv(big_cohort / "subjects.tsv").set_index("subject")
    il2 = CONFIG["il2"]
    doses = PRESETS["il2-course"]["doses"]
    for row in truth.itertuples():
        subj = subjects.loc[row.subject]
        share = il2_effect(row.day, doses, il2["half_life_days"], il2["maintenance_weight"])
        fold = subj["peak_fold_change"] ** share
        assert row.treg_fold_change_expected == pytest.approx(fold, rel=1e-5)
        assert row.treg_pct_cd4_expected == pytest.approx(subj["baseline_treg_pct_cd4"] * fold, rel=1e-5)
        assert row.cd25_treg_fold_change == pytest.approx(subj["cd25_treg_peak_fold_change"] ** share, rel=1e-5)
    d5 = truth[truth["day"] == 5].set_index("subject")
    np.testing.assert_allclose(d5["treg_fold_change_expected"], subjects.loc[d5.index, "peak_fold_change"], rtol=1e-5)


def test_cohort_effect_distribution_matches_the_config(big_cohort):
    subjects = tsv(big_cohort / "subjects.tsv")
    il2 = CONFIG["il2"]
    n = len(subjects)
    assert n == 200 and (subjects["arm"] == "il2").all()
    low = subjects["low_responder"].astype(bool)
    assert within(low.sum(), n, il2["low_responder_share"])
    responders = np.log(subjects.loc[~low, "peak_fold_change"])
    se = 1.2533 * il2["fold_change_sigma"] / math.sqrt(len(responders))  # of the median of a normal
    assert abs(np.median(responders) - math.log(il2["fold_change_median"])) < 4 * se
    assert responders.std() == pytest.approx(il2["fold_change_sigma"], rel=0.2)
    lows = np.log(subjects.loc[low, "peak_fold_change"])
    assert abs(np.median(lows) - math.log(il2["low_responder_median"])) < 4 * 1.2533 * il2["low_responder_sigma"] / math.sqrt(len(lows))
    baseline = subjects["baseline_treg_pct_cd4"] / 100
    patient = CONFIG["cd4"]["patient"]
    assert abs(baseline.mean() - patient["treg"]) < 4 * patient["treg_sd"] / math.sqrt(n)
    lymph = np.log(subjects["lymphocytes_per_ul"])
    median, sigma = CONFIG["lymphocytes_per_ul"]
    assert abs(np.median(lymph) - math.log(median)) < 4 * 1.2533 * sigma / math.sqrt(n)


def test_config_override_changes_the_fold_changes(tmp_path):
    subjects = simulate_cohort(tmp_path, subjects=150, events=100, seed=5,
                               config={"il2": {"fold_change_median": 3.0, "low_responder_share": 0.5}})["subjects"]
    low = subjects["low_responder"].astype(bool)
    assert within(low.sum(), 150, 0.5)
    logs = np.log(subjects.loc[~low, "peak_fold_change"])
    assert abs(np.median(logs) - math.log(3.0)) < 4 * 1.2533 * CONFIG["il2"]["fold_change_sigma"] / math.sqrt(len(logs))
    assert subjects.loc[low, "peak_fold_change"].max() < 1.6  # low responders keep their own distribution
    written = tsv(tmp_path / "subjects.tsv")
    np.testing.assert_allclose(written["peak_fold_change"], subjects["peak_fold_change"], rtol=1e-6)


def test_realised_treg_fold_change_tracks_the_expected_one(cohort):
    truth = tsv(cohort / "truth.tsv").set_index("sample_id")
    n_cd4 = truth[[f"n_{c}" for c in CD4_CLASSES]].sum(axis=1)
    realised, expected = [], []
    for s in [f"P{i:02d}" for i in range(1, 11)]:  # the IL-2 arm
        d0, d5 = f"{s}_D0", f"{s}_D5"
        p0, p5 = truth.loc[d0, "treg_pct_cd4"] / 100, truth.loc[d5, "treg_pct_cd4"] / 100
        log_ratio = math.log(p5 / p0)
        se = math.sqrt((1 - p0) / (n_cd4[d0] * p0) + (1 - p5) / (n_cd4[d5] * p5))
        assert abs(log_ratio - math.log(truth.loc[d5, "treg_fold_change_expected"])) < 4 * se, s
        assert truth.loc[d0, "treg_fold_change_expected"] == 1.0
        realised.append(log_ratio)
        expected.append(math.log(truth.loc[d5, "treg_fold_change_expected"]))
    assert np.corrcoef(realised, expected)[0, 1] > 0.8


def test_placebo_and_healthy_have_no_effect(cohort):
    truth = tsv(cohort / "truth.tsv")
    subjects = tsv(cohort / "subjects.tsv").set_index("subject")
    assert list(subjects["arm"]) == ["il2"] * 10 + ["placebo"] * 2 + ["healthy"] * 2
    assert list(subjects.index[-2:]) == ["HC01", "HC02"] and list(subjects.index[10:12]) == ["P11", "P12"]
    control = truth[truth["arm"] != "il2"]
    assert (control["treg_fold_change_expected"] == 1.0).all()
    assert (control["cd25_treg_fold_change"] == 1.0).all()
    assert (subjects.loc[subjects["arm"] != "il2", "peak_fold_change"] == 1.0).all()
    assert not subjects.loc[subjects["arm"] != "il2", "low_responder"].any()
    for subject, rows in control.groupby("subject"):
        assert rows["treg_pct_cd4_expected"].nunique() == 1, subject
    # healthy controls get the healthy CD4 composition (few CD25- FOXP3+ cells)
    healthy = truth[truth["arm"] == "healthy"]
    n_cd4 = healthy[[f"n_{c}" for c in CD4_CLASSES]].sum(axis=1)
    share = CONFIG["cd4"]["healthy"]["cd25neg_foxp3pos"]
    for count, n in zip(healthy["n_cd25neg_foxp3pos"], n_cd4):
        assert within(count, n, share)


def test_il2_raises_cd25_and_ki67_on_treg():
    def simulate(cd25_fc: float, ki67: float):
        spec = SampleSpec(n_events=100_000, cd4=patient_cd4(0.08), cd25_treg_fc=cd25_fc, ki67_treg_share=ki67)
        return simulate_events(spec, CONFIG, np.random.default_rng(99))

    base, boosted = simulate(1.0, 0.10), simulate(2.0, 0.35)
    treg = boosted.labels == CODE["treg"]
    tcon = boosted.labels == CODE["resting_tcon"]
    ratio = np.median(boosted.dye[treg, col("CD25")]) / np.median(base.dye[base.labels == CODE["treg"], col("CD25")])
    assert ratio == pytest.approx(2.0, rel=0.05)
    median = CONFIG["intensities"]["treg"]["CD25"][0]
    assert np.median(base.dye[base.labels == CODE["treg"], col("CD25")]) == pytest.approx(median, rel=0.1)
    # the others keep their CD25
    act = boosted.labels == CODE["activated_tcon"]
    assert np.median(boosted.dye[act, col("CD25")]) == pytest.approx(CONFIG["intensities"]["activated_tcon"]["CD25"][0], rel=0.1)
    assert abs(np.median(boosted.dye[tcon, col("CD25")])) < 20
    # Ki-67+ share of Treg follows ki67_treg_share; other lymphocytes keep the baseline
    positive = boosted.dye[:, col("Ki-67")] > 1500
    assert within(positive[treg].sum(), treg.sum(), 0.35)
    assert within(positive[tcon].sum(), tcon.sum(), CONFIG["ki67"]["baseline_share"])
    base_treg = base.labels == CODE["treg"]
    assert within((base.dye[base_treg, col("Ki-67")] > 1500).sum(), base_treg.sum(), 0.10)


# -- determinism ---------------------------------------------------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(small_controls, tmp_path):
    again = tmp_path / "again"
    simulate_cohort(again, subjects=2, events=2000, seed=3, healthy=1, controls=True)
    first, second = tree(small_controls), tree(again)
    assert first.keys() == second.keys()
    assert {k for k in first if k.endswith(".fcs")} and {k for k in first if k.endswith(".npy")}
    for name in first:
        assert first[name] == second[name], name
    other = tmp_path / "other"
    simulate_cohort(other, subjects=2, events=2000, seed=4, healthy=1, controls=True)
    third = tree(other)
    assert third.keys() == first.keys()
    for name in first:
        if name.endswith((".fcs", ".npy")):
            assert third[name] != first[name], name
    assert third["truth.tsv"] != first["truth.tsv"] and third["subjects.tsv"] != first["subjects.tsv"]


def test_simulate_events_is_a_function_of_the_generator():
    spec = SampleSpec(n_events=3000, cd4=patient_cd4(), clog=True, drift=True, margin=True, tandem=True)
    a = simulate_events(spec, CONFIG, np.random.default_rng(1))
    b = simulate_events(spec, CONFIG, np.random.default_rng(1))
    c = simulate_events(spec, CONFIG, np.random.default_rng(2))
    assert a.events.tobytes() == b.events.tobytes() and (a.labels == b.labels).all() and a.record == b.record
    assert a.events.tobytes() != c.events.tobytes()


# -- artefacts -----------------------------------------------------------------------------


def artefact_cohort(path: Path, **rates: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    simulate_cohort(path, subjects=1, events=20_000, seed=21, config={"artefacts": rates})
    return tsv(path / "samples.tsv"), tsv(path / "truth.tsv")


def test_no_artefacts_by_default(cohort):
    truth = tsv(cohort / "truth.tsv")
    assert not truth[list(ARTEFACTS)].any().any()
    assert (truth["margin_events"] == 0).all()
    assert truth["clog_start_s"].isna().all() and truth["drift_detector"].isna().all()
    sample = read_fcs(cohort / "fcs" / "P03_D12.fcs")
    assert not (sample.events[:, :-1] == TOP).any()


def test_clog_thins_the_flow_then_bursts(tmp_path):
    sheet, truth = artefact_cohort(tmp_path, clog=1.0)
    assert truth["clog"].all() and not truth[["drift", "margin", "low_events", "tandem"]].any().any()
    seconds = CONFIG["acquisition_seconds"]
    for row, sample_row in zip(truth.itertuples(), sheet.itertuples()):
        start, stop = row.clog_start_s, row.clog_stop_s
        assert 0.2 * seconds - 0.01 <= start <= 0.7 * seconds + 0.01
        assert stop - start == pytest.approx(0.05 * seconds, abs=0.01)
        t = read_fcs(tmp_path / sample_row.fcs).column("Time").astype(np.float64)
        assert (np.diff(t) >= 0).all()
        inside = ((t >= start) & (t < stop)).sum() / (stop - start)
        burst_len = 0.005 * seconds
        burst = ((t >= stop) & (t < stop + burst_len)).sum() / burst_len
        before = (t < start - 1).sum() / (start - 1)
        after = (t >= stop + burst_len + 1).sum() / (seconds - stop - burst_len - 1)
        outside = (before + after) / 2
        assert before == pytest.approx(after, rel=0.1)
        assert 0.05 < inside / outside < 0.16, (row.sample_id, inside / outside)
        assert burst / outside > 5, (row.sample_id, burst / outside)
        assert len(t) == 20_000  # held back, not lost


def test_clog_in_simulate_events_records_the_window():
    spec = SampleSpec(n_events=50_000, cd4=patient_cd4(), clog=True)
    sim = simulate_events(spec, CONFIG, np.random.default_rng(4))
    start, stop = sim.record["clog_start_s"], sim.record["clog_stop_s"]
    t = sim.events[:, -1].astype(np.float64) * CONFIG["timestep"]
    inside = ((t >= start) & (t < stop)).sum()
    expected = 50_000 * (stop - start) / CONFIG["acquisition_seconds"] * 0.1
    assert abs(inside - expected) < 5 * math.sqrt(expected)


def drift_factor(spec_kwargs: dict, seed: int):
    plain = simulate_events(SampleSpec(n_events=20_000, cd4=patient_cd4(), **spec_kwargs), CONFIG, np.random.default_rng(seed))
    drifted = simulate_events(SampleSpec(n_events=20_000, cd4=patient_cd4(), drift=True, **spec_kwargs), CONFIG,
                              np.random.default_rng(seed))
    return plain, drifted


def test_drift_dims_one_detector_late_in_the_run():
    plain, drifted = drift_factor({}, 12)
    detector = drifted.record["drift_detector"]
    assert detector in DETECTORS
    j = 3 + DETECTORS.index(detector)
    others = [i for i in range(plain.events.shape[1]) if i != j]
    np.testing.assert_array_equal(plain.events[:, others], drifted.events[:, others])
    np.testing.assert_array_equal(plain.labels, drifted.labels)
    time = drifted.events[:, -1] * CONFIG["timestep"]
    seconds = CONFIG["acquisition_seconds"]
    moved = plain.events[:, j] != 0
    factor = drifted.events[moved, j].astype(np.float64) / plain.events[moved, j]
    early = time[moved] < 0.7 * seconds
    np.testing.assert_allclose(factor[early], 1.0, rtol=1e-6)
    assert factor[~early].min() == pytest.approx(0.8, abs=0.01)
    order = np.argsort(time[moved][~early], kind="stable")
    assert (np.diff(factor[~early][order]) <= 1e-6).all()  # signal falls steadily


def test_drift_recorded_in_the_cohort_truth(tmp_path):
    sheet, truth = artefact_cohort(tmp_path, drift=1.0)
    assert truth["drift"].all() and truth["drift_detector"].isin(DETECTORS).all()
    seconds = CONFIG["acquisition_seconds"]
    for row, sample_row in zip(truth.itertuples(), sheet.itertuples()):
        sample = read_fcs(tmp_path / sample_row.fcs)
        labels = labels_of(tmp_path, sample_row.sample_id)
        time = sample.column("Time")
        early, late = time < 0.6 * seconds, time > 0.9 * seconds
        # the recorded detector is the one whose late-run signal shrank most; each event's |value|
        # is scaled by its class's median so that the channel's mixture of classes does not matter
        spread = {}
        for d in DETECTORS:
            value = np.abs(sample.column(d)).astype(np.float64)
            scaled = np.empty_like(value)
            for code in np.unique(labels):
                members = labels == code
                scaled[members] = value[members] / np.median(value[members])
            spread[d] = np.median(scaled[late]) / np.median(scaled[early])
        assert spread[row.drift_detector] < 0.93, (row.sample_id, spread)
        assert min(spread, key=spread.get) == row.drift_detector, (row.sample_id, spread)


def test_margin_events_saturate_and_are_counted(tmp_path):
    sheet, truth = artefact_cohort(tmp_path, margin=1.0)
    assert truth["margin"].all()
    for row, sample_row in zip(truth.itertuples(), sheet.itertuples()):
        events = read_fcs(tmp_path / sample_row.fcs).events
        assert 0.005 * 20_000 < row.margin_events < 0.04 * 20_000
        assert (events[:, 0] == TOP).sum() == row.margin_events
        saturated = (events[:, FL] == TOP).sum(axis=0)
        assert saturated.max() == row.margin_events  # one fluorescence channel takes them all
        assert events[:, :-1].max() == TOP  # nothing above the ADC's ceiling


def test_low_event_count(tmp_path):
    sheet, truth = artefact_cohort(tmp_path, low_events=1.0)
    assert truth["low_events"].all() and (truth["n_events"] == 3000).all()
    for row in sheet.itertuples():
        assert read_fcs(tmp_path / row.fcs).n_events == 3000
        assert labels_of(tmp_path, row.sample_id).size == 3000


def test_tandem_degradation_leaves_pe_undercompensated(tmp_path):
    plain = simulate_events(SampleSpec(n_events=30_000, cd4=patient_cd4()), CONFIG, np.random.default_rng(31))
    broken = simulate_events(SampleSpec(n_events=30_000, cd4=patient_cd4(), tandem=True), CONFIG, np.random.default_rng(31))
    pe, cy7 = col("CD25"), col("CD8")
    res = {}
    for name, sim in (("plain", plain), ("tandem", broken)):
        comp = compensate(read_fcs(write_sim(tmp_path / f"{name}.fcs", sim))).events[:, FL]
        res[name] = (comp[:, pe] - sim.dye[:, pe]).astype(np.float64), sim.dye[:, cy7].astype(np.float64)
    assert abs(np.polyfit(res["plain"][1], res["plain"][0], 1)[0]) < 0.01
    assert np.polyfit(res["tandem"][1], res["tandem"][0], 1)[0] == pytest.approx(0.10, abs=0.01)
    assert res["tandem"][0].std() > 2 * res["plain"][0].std()


def test_tandem_recorded_in_the_cohort_truth(tmp_path):
    sheet, truth = artefact_cohort(tmp_path, tandem=1.0)
    assert truth["tandem"].all()
    row = sheet.iloc[0]
    sample = compensate(read_fcs(tmp_path / row["fcs"]))
    labels = labels_of(tmp_path, row["sample_id"])
    cd8 = labels == CODE["cd8_t"]
    resting = labels == CODE["resting_tcon"]
    pe = sample.column("YG586-A")
    # CD8 T cells are CD25-negative; only the degraded PE-Cy7 tandem puts them up in PE
    assert np.median(pe[cd8]) > 1000 > abs(np.median(pe[resting])) * 10


def test_artefacts_flag_at_the_configured_rates(tmp_path, capsys):
    code = main(["simulate", "--out", str(tmp_path), "--subjects", "30", "--events", "200", "--seed", "2", "--artefacts"])
    assert code == 0
    truth = tsv(tmp_path / "truth.tsv")
    n = len(truth)
    for artefact, rate in CONFIG["artefact_rates"].items():
        assert within(truth[artefact].sum(), n, rate), (artefact, truth[artefact].sum(), n)
    assert (truth.loc[truth["low_events"], "n_events"] == 30).all()
    assert (truth.loc[~truth["low_events"], "n_events"] == 200).all()
    assert truth.loc[truth["clog"], "clog_start_s"].notna().all() and truth.loc[~truth["clog"], "clog_start_s"].isna().all()
    assert truth.loc[truth["drift"], "drift_detector"].notna().all()
    assert (truth.loc[truth["margin"], "margin_events"] >= 0).all() and (truth.loc[~truth["margin"], "margin_events"] == 0).all()


# -- controls ------------------------------------------------------------------------------


def test_single_stain_and_fmo_controls(small_controls):
    controls = tsv(small_controls / "controls.tsv")
    batches = tsv(small_controls / "samples.tsv")["batch"].unique()
    singles = controls[controls["kind"] == "single_stain"]
    fmos = controls[controls["kind"] == "fmo"]
    assert set(controls["batch"]) == set(batches)
    assert len(singles) == len(batches) * len(MARKERS)
    assert sorted(fmos["marker"].unique()) == ["CD127", "CD25", "FOXP3"]
    for row in singles.itertuples():
        sample = read_fcs(small_controls / row.file)
        assert CONFIG["panel"][row.marker][0] == row.fluorochrome
        own = DETECTORS[MARKERS.index(row.marker)]
        high = np.percentile(sample.events[:, FL], 90, axis=0)
        assert DETECTORS[int(np.argmax(high))] == own, row.file
        bright = sample.column(own) > 5000
        assert 0.4 < bright.mean() < 0.6
        # the bright events spill into the other detectors as the matrix says (up to the
        # batch's gain ratio, a few per cent) and nowhere else
        j = MARKERS.index(row.marker)
        stain = np.median(sample.events[bright, 3 + j])
        assert 10_000 < stain < 40_000
        gains = batch_gains(small_controls, row.batch)
        matrix = spillover_matrix(CONFIG) * gains[None, :] / gains[:, None]
        for k in range(len(MARKERS)):
            if k == j:
                continue
            spill = np.median(sample.events[bright, 3 + k]) / stain
            if matrix[j, k]:
                assert spill == pytest.approx(matrix[j, k], rel=0.25), (row.file, DETECTORS[k])
            else:
                assert abs(spill) < 0.005, (row.file, DETECTORS[k])
    full = read_fcs(small_controls / "fcs" / "P01_D0.fcs")
    for row in fmos.itertuples():
        sample = read_fcs(small_controls / row.file)
        j = MARKERS.index(row.marker)
        assert sample.markers[3 + j].startswith("FMO")
        assert [m for i, m in enumerate(sample.markers) if i != 3 + j] == [m for i, m in enumerate(full.markers) if i != 3 + j]
        comp = compensate(sample).events[:, 3 + j]
        stained = compensate(full).events[:, 3 + j]
        assert np.percentile(comp, 99.5) < 0.5 * np.percentile(stained, 99.5), row.file
        assert (small_controls / row.file).parent.name == "controls"


def test_true_spillover_keyword_compensates_the_batch_controls(small_controls):
    controls = tsv(small_controls / "controls.tsv")
    worst = 0.0
    for row in controls[controls["kind"] == "single_stain"].itertuples():
        sample = read_fcs(small_controls / row.file)
        j = MARKERS.index(row.marker)
        bright = sample.events[:, 3 + j] > 5000
        comp = compensate(sample).events[bright][:, FL]
        left = np.abs(np.median(np.delete(comp, j, axis=1), axis=0)).max() / np.median(comp[:, j])
        worst = max(worst, float(left))
    assert worst < 0.005  # spreading error has median 0; leftover spill does not


# -- configuration errors -----------------------------------------------------------------


def test_unknown_settings_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("il2:\n  fold_chnge_median: 3.0\n", encoding="utf-8")
    with pytest.raises(SimulationError, match="il2.fold_chnge_median"):
        load_config(bad)
    bad.write_text("acquisition_secs: 60\n", encoding="utf-8")
    with pytest.raises(SimulationError, match="acquisition_secs"):
        load_config(bad)
    with pytest.raises(SimulationError, match="colg"):
        load_config(overrides={"artefacts": {"colg": 1.0}})
    bad.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(SimulationError, match="mapping"):
        load_config(bad)
    bad.write_text("il2: [unclosed\n", encoding="utf-8")
    with pytest.raises(SimulationError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(SimulationError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_config_merges_nested_settings_without_touching_the_defaults(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("il2:\n  half_life_days: 3.0\npanel:\n  CD25: [BV711, V710-A, 150.0]\n", encoding="utf-8")
    config = load_config(good, overrides={"il2": {"fold_change_median": 2.5}})
    assert config["il2"]["half_life_days"] == 3.0 and config["il2"]["fold_change_median"] == 2.5
    assert config["il2"]["low_responder_share"] == DEFAULTS["il2"]["low_responder_share"]
    assert config["panel"]["CD25"][0] == "BV711"
    assert DEFAULTS["il2"]["half_life_days"] == 6.0 and DEFAULTS["panel"]["CD25"][0] == "PE"


def test_bad_cohort_arguments(tmp_path):
    with pytest.raises(SimulationError, match="weekly"):
        simulate_cohort(tmp_path, subjects=2, visits="weekly", events=500)
    with pytest.raises(SimulationError, match="placebo"):
        simulate_cohort(tmp_path, subjects=2, placebo=3, events=500)
    with pytest.raises(SimulationError):
        simulate_cohort(tmp_path, subjects=0, healthy=0, events=500)
    with pytest.raises(SimulationError, match="100"):
        simulate_cohort(tmp_path, subjects=1, events=50)


# -- command line --------------------------------------------------------------------------


def test_cli_simulate_writes_a_readable_cohort(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["simulate", "--out", str(out), "--subjects", "2", "--events", "2000", "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and "8 samples of 2 subjects" in lines[0] and str(out) in lines[0]
    assert captured.err == ""
    sheet = tsv(out / "samples.tsv")
    assert len(sheet) == 8
    for row in sheet.itertuples():
        path = out / row.fcs
        assert path.is_file()
        assert read_fcs(path).n_events == 2000
    for name in ("truth.tsv", "subjects.tsv", "truth/classes.tsv"):
        assert (out / name).is_file()
    assert not (out / "controls.tsv").exists()


def test_cli_simulate_with_config_arms_and_controls(tmp_path, capsys):
    config = tmp_path / "sim.yaml"
    config.write_text("il2:\n  fold_change_median: 3.0\n  low_responder_share: 0.0\n  fold_change_sigma: 0.0\n",
                      encoding="utf-8")
    out = tmp_path / "demo"
    code = main(["simulate", "--out", str(out), "--subjects", "3", "--placebo", "1", "--healthy", "1", "--events", "500",
                 "--visits", "he", "--config", str(config), "--controls"])
    captured = capsys.readouterr()
    assert code == 0 and "controls" in captured.out
    subjects = tsv(out / "subjects.tsv")
    assert list(subjects["arm"]) == ["il2", "il2", "placebo", "healthy"]
    assert subjects.loc[subjects["arm"] == "il2", "peak_fold_change"].tolist() == pytest.approx([3.0, 3.0])
    sheet = tsv(out / "samples.tsv")
    assert len(sheet) == 3 * len(PRESETS["he"]["days"]) + 1
    assert (out / "controls.tsv").is_file()


@pytest.mark.parametrize("content, expected", [
    (None, "missing.yaml"),
    ("il2:\n  fold_chnge_median: 3.0\n", "il2.fold_chnge_median"),
    ("just a string\n", "mapping"),
])
def test_cli_simulate_bad_config_is_one_line(tmp_path, capsys, content, expected):
    config = tmp_path / "missing.yaml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    code = main(["simulate", "--out", str(tmp_path / "o"), "--subjects", "1", "--events", "200", "--config", str(config)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("treganalysis: error:") and expected in lines[0]
    assert captured.out == ""


def test_cli_simulate_bad_arguments_are_one_line(tmp_path, capsys):
    code = main(["simulate", "--out", str(tmp_path), "--subjects", "2", "--placebo", "3", "--events", "200"])
    captured = capsys.readouterr()
    assert code == 1 and len(captured.err.strip().splitlines()) == 1 and "placebo" in captured.err


@pytest.mark.parametrize("content", ["il2: 5\n", "panel:\n  CD25: [PE, YG586-A]\n"])
def test_cli_simulate_mistyped_config_is_one_line(tmp_path, capsys, content):
    config = tmp_path / "sim.yaml"
    config.write_text(content, encoding="utf-8")
    code = main(["simulate", "--out", str(tmp_path / "o"), "--subjects", "1", "--events", "200", "--config", str(config)])
    captured = capsys.readouterr()
    assert code == 1 and len(captured.err.strip().splitlines()) == 1


def test_cli_parts_and_both_tables_in_one_call_are_the_whole_cohort(tmp_path, capsys):
    """The demo workflow's calls: samples in two parts, then `--tables sheet --tables truth` in one
    process, give the files of one `simulate` run byte for byte."""
    cohort = ["--subjects", "1", "--visits", "il2-course", "--events", "500", "--seed", "4"]
    assert main(["simulate", "--out", str(tmp_path / "whole"), *cohort]) == 0
    parts = str(tmp_path / "parts")
    assert main(["simulate", "--out", parts, *cohort, "--sample", "P01_D5", "--sample", "P01_D33"]) == 0
    assert main(["simulate", "--out", parts, *cohort, "--sample", "P01_D0", "--sample", "P01_D12"]) == 0
    assert main(["simulate", "--out", parts, *cohort, "--tables", "sheet", "--tables", "truth"]) == 0
    assert "wrote samples.tsv, subjects.tsv, batches.tsv, truth/classes.tsv, truth.tsv" in capsys.readouterr().out
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert len(whole) == 4 + 4 + 5
    for name in whole:
        assert (tmp_path / "parts" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # the control files go with the sheet only
    assert main(["simulate", "--out", parts, *cohort, "--tables", "truth", "--controls"]) == 1
    assert "--controls" in capsys.readouterr().err
