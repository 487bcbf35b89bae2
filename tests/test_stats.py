"""Longitudinal statistics (treganalysis.stats and `treganalysis stats`).

- Known answers: the test rows equal scipy and statsmodels called directly on the same numbers;
  the Hodges-Lehmann interval equals the exact one found by enumerating every sign pattern of
  the signed-rank statistic, and covers at its nominal rate.
- Cohort tables built row by row (``make_cohort``): baselines, fold changes, exclusions, derived
  read-outs, the responder call, settings and error messages.
- Null cohorts: the tests reject about 5% of the time when nothing changes.
- A simulated IL-2 course through the real chain (simulate, gate, cohort table, stats) finds
  the true fold change.
- The command line writes the three tables and fails in one line on a user's mistake.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import treganalysis
from treganalysis._files import write_tsv_atomic
from treganalysis.cli import main
from treganalysis.cohort import cohort_table
from treganalysis.sheet import load_sample_sheet
from treganalysis.stats import (
    DEFAULTS, StatsError, cohort_tests, hodges_lehmann, longitudinal, readouts, responders, run_stats, settings,
)

VISITS = (("D0", 0), ("D5", 5), ("D12", 12), ("D33", 33))
Z95 = sps.norm.ppf(0.975)
VISIT_TERM = "C(visit, Treatment('baseline'))[T.{}]"

# two-sided 5% critical values of the signed-rank statistic (reject when T <= value), the
# printed table of Wilcoxon, Katti & Wilcox (1963) / Hollander & Wolfe
SIGNED_RANK_CRITICAL_5PCT = {8: 3, 9: 5, 10: 8, 11: 10, 12: 13}


@pytest.fixture(scope="module", autouse=True)
def _frozen_gc_module():
    """statsmodels' Holm correction runs a full gc.collect() on every call (about 0.1 s in a test
    process, and cohort_tests calls it once per read-out and test); objects frozen out of the
    collector make it cheap. Nothing computed changes."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _frozen_gc():
    gc.freeze()  # what the earlier tests and fixtures left behind


# -- cohort tables built at table level ---------------------------------------------------------------


def make_cohort(subject, timepoint, day, treg_pct, cd4=5000, *, sample_id=None, arm="il2", role="patient",
                lymphocytes_per_ul=1500.0, qc_status="pass", cd25_treg=3000.0, cd25_tcon=100.0,
                treg_status="ok") -> pd.DataFrame:
    """The cohort-table rows (``treganalysis cohort``) of samples given per sample (arrays or scalars).

    Populations: lymphocytes > live > cd3 > cd4 > treg, tcon, with gating ``status`` ok (``treg_status``
    for treg) and QC ``qc_status``. Treg is ``treg_pct`` % of CD4 exactly (its count is the rounded
    share of ``cd4`` events); tcon is the rest of CD4. The parents above CD4 are fixed multiples of
    CD4 (cd3 = cd4 / 0.6, live = cd3 / 0.65, lymphocytes = live / 0.9). ``*_low``/``*_high`` are
    0.9x/1.1x the value, to see them carried through. Vectorised: one array entry per sample.
    """
    subject = np.asarray(subject, dtype=object).ravel()
    m = subject.size

    def each(value, dtype=None):
        return np.broadcast_to(np.asarray(value, dtype=dtype), (m,)).copy()

    timepoint, day, pct = each(timepoint, object), each(day, float), each(treg_pct, float)
    n_cd4 = each(cd4, np.int64)
    sample_id = each(sample_id, object) if sample_id is not None else (
        pd.Series(subject).astype(str) + "_" + pd.Series(timepoint).astype(str)).to_numpy(dtype=object)
    treg = np.rint(pct / 100.0 * n_cd4).astype(np.int64)
    cd3 = np.rint(n_cd4 / 0.6).astype(np.int64)
    live = np.rint(cd3 / 0.65).astype(np.int64)
    lymph = np.rint(live / 0.9).astype(np.int64)
    singlets = np.rint(lymph / 0.8).astype(np.int64)
    nan = np.full(m, np.nan)
    treg_status = each(treg_status, object)
    treg_ok = treg_status == "ok"
    populations = [  # name, parent, count, parent count, pct_cd4, median CD25, status
        ("lymphocytes", "singlets", lymph, singlets, nan, each(40.0, float), each("ok", object)),
        ("live", "lymphocytes", live, lymph, nan, each(40.0, float), each("ok", object)),
        ("cd3", "live", cd3, live, nan, each(60.0, float), each("ok", object)),
        ("cd4", "cd3", n_cd4, cd3, each(100.0, float), each(100.0, float), each("ok", object)),
        ("treg", "cd4", treg, n_cd4, np.where(treg_ok, pct, np.nan), each(cd25_treg, float), treg_status),
        ("tcon", "cd4", n_cd4 - treg, n_cd4, 100.0 - pct, each(cd25_tcon, float), each("ok", object)),
    ]
    frames = []
    for name, parent, count, parent_count, pct_cd4, cd25, status in populations:
        pct_parent = np.where(name == "treg", pct, 100.0 * count / parent_count)
        pct_parent = np.where(status == "ok", pct_parent, np.nan)
        frames.append(pd.DataFrame({
            "sample_id": sample_id, "subject": subject, "timepoint": timepoint, "day": day,
            "arm": each(arm, object), "lymphocytes_per_ul": each(lymphocytes_per_ul, float),
            "role": each(role, object), "population": name, "parent": parent, "status": status,
            "qc_status": each(qc_status, object), "count": count, "parent_count": parent_count,
            "pct_parent": pct_parent, "pct_parent_low": 0.9 * pct_parent, "pct_parent_high": 1.1 * pct_parent,
            "median_cd25": cd25, "pct_cd4": pct_cd4, "pct_cd4_low": 0.9 * pct_cd4, "pct_cd4_high": 1.1 * pct_cd4,
        }))
    order = {name: i for i, (name, *_rest) in enumerate(populations)}
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["sample_id", "population"], key=lambda s: s.map(order) if s.name == "population" else s,
                              kind="stable")
    return table.reset_index(drop=True)


def failed_sample(sample_id: str, subject: str, timepoint: str, day: float) -> pd.DataFrame:
    """The one row `gate --record-failure` leaves for a sample that could not be gated."""
    return pd.DataFrame([{"sample_id": sample_id, "subject": subject, "timepoint": timepoint, "day": day, "arm": "il2",
                          "lymphocytes_per_ul": 1500.0, "role": "patient", "population": np.nan, "parent": np.nan,
                          "status": "failed", "qc_status": np.nan, "reason": "cannot be read"}])


def course(treg_pct: dict[str, list[float]], visits=VISITS, **kwargs) -> pd.DataFrame:
    """Subjects x visits: ``treg_pct[subject]`` is the Treg % of CD4 at each visit."""
    subjects = [s for s in treg_pct for _ in visits]
    return make_cohort(subjects, [t for _ in treg_pct for t, _d in visits], [d for _ in treg_pct for _t, d in visits],
                       [p for s in treg_pct for p in treg_pct[s]], **kwargs)


def rows_of(long: pd.DataFrame, population: str = "treg") -> pd.DataFrame:
    return long[long["population"] == population].set_index(["subject", "timepoint"])


def walsh_median(d: np.ndarray) -> float:
    return float(np.median([(a + b) / 2.0 for a, b in itertools.combinations_with_replacement(d, 2)]))


# -- Hodges-Lehmann -----------------------------------------------------------------------------------------


def signed_rank_counts(n: int) -> np.ndarray:
    """Number of the 2^n sign patterns giving each value 0..n(n+1)/2 of the signed-rank statistic."""
    positive = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return np.bincount(positive @ np.arange(1, n + 1), minlength=n * (n + 1) // 2 + 1)


def exact_k(n: int, confidence: float) -> int:
    """The largest k with P(T <= k - 1) <= (1 - confidence) / 2, by enumeration (0: none)."""
    cdf = np.cumsum(signed_rank_counts(n)) / 2.0**n
    k = 0
    while cdf[k] <= (1.0 - confidence) / 2.0 + 1e-12:
        k += 1
    return k


def test_hodges_lehmann_estimate_is_the_median_of_the_walsh_averages():
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 5, 8, 13, 20):
        d = rng.normal(0.4, 1.0, n)
        assert hodges_lehmann(d)[0] == pytest.approx(walsh_median(d), abs=1e-12)
    # by hand: the 15 Walsh averages of 0, 1, 2, 10, 11 have median 5.5 (the median of d is 2, the mean 4.8)
    assert hodges_lehmann(np.array([0.0, 1.0, 2.0, 10.0, 11.0]))[0] == 5.5


@pytest.mark.parametrize("n", [8, 9, 10, 11, 12])
def test_hodges_lehmann_interval_is_the_exact_signed_rank_interval(n):
    rng = np.random.default_rng(100 + n)
    d = rng.normal(1.0, 2.0, n)
    walsh = np.sort([(a + b) / 2.0 for a, b in itertools.combinations_with_replacement(d, 2)])
    k = exact_k(n, 0.95)
    assert k - 1 == SIGNED_RANK_CRITICAL_5PCT[n]  # the enumeration agrees with the printed table
    estimate, low, high = hodges_lehmann(d, 0.95)
    assert (low, high) == (pytest.approx(walsh[k - 1], abs=1e-12), pytest.approx(walsh[walsh.size - k], abs=1e-12))
    # the interval is the set of shifts the exact test does not reject: just inside each end
    # p > 5%, just outside p <= 5% (scipy's exact signed-rank test on d - shift)
    def p(shift):
        return sps.wilcoxon(d - shift, method="exact").pvalue
    assert p((walsh[k - 1] + walsh[k]) / 2) > 0.05 and p((walsh[-k] + walsh[-k - 1]) / 2) > 0.05
    assert p((walsh[k - 2] + walsh[k - 1]) / 2) <= 0.05 and p((walsh[-k] + walsh[-k + 1]) / 2) <= 0.05
    # another confidence level
    k90 = exact_k(n, 0.90)
    _, low90, high90 = hodges_lehmann(d, 0.90)
    assert (low90, high90) == (pytest.approx(walsh[k90 - 1]), pytest.approx(walsh[walsh.size - k90]))
    assert low <= low90 <= estimate <= high90 <= high


@pytest.mark.parametrize("n", [8, 12])
def test_hodges_lehmann_interval_covers_at_its_exact_level(n):
    """On normal data the interval covers the true median shift with probability exactly
    1 - 2 P(T <= k - 1) (distribution-free): 0.961 for n = 8, 0.958 for n = 12."""
    draws = 3000
    rng = np.random.default_rng(7 + n)
    shift = 0.7
    data = rng.normal(shift, 1.3, size=(draws, n))
    intervals = np.array([hodges_lehmann(row, 0.95)[1:] for row in data])
    covered = np.mean((intervals[:, 0] <= shift) & (shift <= intervals[:, 1]))
    k = exact_k(n, 0.95)
    nominal = 1.0 - 2.0 * np.cumsum(signed_rank_counts(n))[k - 1] / 2.0**n
    assert 0.95 <= nominal < 0.97
    se = math.sqrt(nominal * (1 - nominal) / draws)
    assert abs(covered - nominal) < 4 * se, (covered, nominal)


def test_hodges_lehmann_small_and_missing():
    # n = 5: even T = 0 has probability 1/32 > 2.5%, so no 95% interval
    estimate, low, high = hodges_lehmann(np.array([1.0, 2.0, 3.0, 4.0, 6.0]))
    assert estimate == 3.0 and math.isnan(low) and math.isnan(high)
    # n = 6: P(T = 0) = 1/64 <= 2.5%, k = 1: the interval runs from the smallest to the largest difference
    d = np.array([-0.5, 1.0, 2.0, 3.0, 4.0, 6.5])
    assert hodges_lehmann(d)[1:] == (-0.5, 6.5)
    # NaN and inf are dropped; nothing left gives NaN
    assert hodges_lehmann(np.append(d, [np.nan, np.inf])) == hodges_lehmann(d)
    assert all(math.isnan(v) for v in hodges_lehmann(np.array([np.nan])))


# -- known answers: cohort_tests against scipy and statsmodels called directly -------------------------------


SUBJECTS = [f"S{i:02d}" for i in range(1, 11)]
TESTED = ["treg", "tcon", "treg_tcon_ratio", "treg_per_ul", "cd25_mfi_treg"]
ARMS = ["il2"] * 5 + ["placebo"] * 5


@pytest.fixture(scope="module")
def two_arm():
    """10 subjects x 4 visits in two arms: Treg % (3 decimals) and CD4 events drawn once."""
    rng = np.random.default_rng(20240611)
    base = 5.0 * np.exp(rng.normal(0.0, 0.3, (10, 1)))
    effect = np.where(np.array(ARMS)[:, None] == "il2", [[1.0, 1.8, 1.3, 1.0]], 1.0)
    pct = np.round(base * effect * np.exp(rng.normal(0.0, 0.12, (10, 4))), 3)
    cd4 = rng.integers(3000, 9000, (10, 4))
    table = make_cohort(np.repeat(SUBJECTS, 4), np.tile([t for t, _ in VISITS], 10),
                        np.tile([d for _, d in VISITS], 10), pct.ravel(), cd4.ravel(), arm=np.repeat(ARMS, 4),
                        cd25_treg=np.round(3000 * np.exp(rng.normal(0, 0.2, 40)), 1))
    long = longitudinal(readouts(table))
    gc.freeze()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tests = cohort_tests(long[long["population"].isin(TESTED)])  # every read-out would take 5 s
    return {"pct": pct, "cd4": cd4, "table": table, "long": long, "tests": tests}


def row(tests, population, timepoint, test):
    found = tests[(tests["population"] == population) & (tests["timepoint"] == timepoint) & (tests["test"] == test)]
    assert len(found) == 1, (population, timepoint, test)
    return found.iloc[0]


def fit_direct(data: pd.DataFrame, formula: str):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, groups=data["subject"]).fit(reml=True)


def outcome_frame(two_arm) -> pd.DataFrame:
    """Subject, visit, arm and the logit outcome, from the drawn numbers (not from the package)."""
    pct, cd4 = two_arm["pct"], two_arm["cd4"]
    k = pct / 100.0 * cd4
    p = (k + 0.5) / (cd4 + 1.0)
    return pd.DataFrame({"subject": np.repeat(SUBJECTS, 4), "arm": np.repeat(ARMS, 4),
                         "visit": np.tile(["baseline", "D5", "D12", "D33"], 10), "y": np.log(p / (1 - p)).ravel()})


def test_wilcoxon_rows_equal_scipy(two_arm):
    tests, pct = two_arm["tests"], two_arm["pct"]
    for v, (timepoint, _day) in enumerate(VISITS[1:], start=1):
        diff = pct[:, v] - pct[:, 0]
        expected = sps.wilcoxon(diff)
        got = row(tests, "treg", timepoint, "wilcoxon")
        assert got["n"] == 10
        assert got["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert got["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert got["estimate"] == pytest.approx(walsh_median(diff), rel=1e-9)
        assert (got["ci_low"], got["ci_high"]) == pytest.approx(hodges_lehmann(diff)[1:], rel=1e-12)
        assert got["estimate_scale"] == "difference (% of CD4)"
    # the effect was put at D5: the test sees it (il2 arm x1.8; the placebo arm dilutes it)
    assert row(tests, "treg", "D5", "wilcoxon")["estimate"] > 0.5


def test_mixed_model_rows_equal_statsmodels(two_arm):
    tests = two_arm["tests"]
    fit = fit_direct(outcome_frame(two_arm), "y ~ C(visit, Treatment('baseline'))")
    for timepoint in ("D5", "D12", "D33"):
        got, term = row(tests, "treg", timepoint, "mixed_model"), VISIT_TERM.format(timepoint)
        estimate, se = fit.params[term], fit.bse[term]
        assert got["estimate"] == pytest.approx(estimate, rel=1e-6, abs=1e-9)
        assert got["statistic"] == pytest.approx(fit.tvalues[term], rel=1e-6)
        assert got["p_value"] == pytest.approx(fit.pvalues[term], rel=1e-5, abs=1e-12)
        assert got["ci_low"] == pytest.approx(estimate - Z95 * se, rel=1e-6)
        assert got["ci_high"] == pytest.approx(estimate + Z95 * se, rel=1e-6)
        assert got["n"] == 10 and got["estimate_scale"] == "logit difference from baseline"
    assert row(tests, "treg", "D5", "mixed_model")["p_value"] < 0.01


def test_mixed_model_of_a_ratio_is_on_the_log_scale(two_arm):
    table, tests = two_arm["table"], two_arm["tests"]
    wide = table.pivot_table(index="sample_id", columns="population", values="count")
    ratio = (wide["treg"] / wide["tcon"]).reindex([f"{s}_{t}" for s in SUBJECTS for t, _ in VISITS]).to_numpy()
    data = outcome_frame(two_arm).assign(y=np.log(ratio))
    fit = fit_direct(data, "y ~ C(visit, Treatment('baseline'))")
    got = row(tests, "treg_tcon_ratio", "D5", "mixed_model")
    assert got["estimate"] == pytest.approx(fit.params[VISIT_TERM.format("D5")], rel=1e-6)
    assert got["p_value"] == pytest.approx(fit.pvalues[VISIT_TERM.format("D5")], rel=1e-5, abs=1e-12)
    assert got["estimate_scale"] == "log difference from baseline"


def test_arm_tests_equal_scipy_and_statsmodels(two_arm):
    tests, pct = two_arm["tests"], two_arm["pct"]
    arms = np.array(ARMS)
    fit = fit_direct(outcome_frame(two_arm), "y ~ C(visit, Treatment('baseline')) * C(arm)")
    for v, (timepoint, _day) in enumerate(VISITS[1:], start=1):
        fc = pct[:, v] / pct[:, 0]
        il2, placebo = fc[arms == "il2"], fc[arms == "placebo"]
        expected = sps.mannwhitneyu(placebo, il2, alternative="two-sided")
        got = row(tests, "treg", timepoint, "mann_whitney")
        assert got["n"] == 10
        assert got["statistic"] == pytest.approx(expected.statistic)
        assert got["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert got["estimate"] == pytest.approx(np.median(placebo) - np.median(il2), rel=1e-12)
        term = f"{VISIT_TERM.format(timepoint)}:C(arm)[T.placebo]"
        got = row(tests, "treg", timepoint, "mixed_model_arm_x_visit")
        assert got["estimate"] == pytest.approx(fit.params[term], rel=1e-6, abs=1e-9)
        assert got["p_value"] == pytest.approx(fit.pvalues[term], rel=1e-5, abs=1e-12)
        assert got["ci_high"] - got["ci_low"] == pytest.approx(2 * Z95 * fit.bse[term], rel=1e-6)
    # at D5 every il2 subject rose about 1.8x and no placebo subject did
    assert row(tests, "treg", "D5", "mann_whitney")["p_value"] < 0.05
    assert row(tests, "treg", "D5", "mixed_model_arm_x_visit")["estimate"] < -0.3


def test_holm_then_benjamini_hochberg(two_arm):
    from statsmodels.stats.multitest import multipletests

    tests = two_arm["tests"]
    assert sorted(tests["population"].unique()) == sorted(TESTED)  # several read-outs: both steps do something
    checked = 0
    for _, group in tests.groupby(["population", "test"]):
        p = group["p_value"].dropna()
        assert len(p) == 3
        np.testing.assert_allclose(group.loc[p.index, "p_holm"], multipletests(p, method="holm")[1], rtol=1e-12)
        checked += 1
    for _, group in tests.groupby(["timepoint", "test"]):
        p = group["p_holm"].dropna()
        np.testing.assert_allclose(group.loc[p.index, "p_adjusted"], multipletests(p, method="fdr_bh")[1],
                                   rtol=1e-12)
    assert checked == tests.groupby(["population", "test"]).ngroups
    good = tests["p_value"].notna()
    assert (tests.loc[good, "p_holm"] >= tests.loc[good, "p_value"] - 1e-15).all()
    assert (tests.loc[good, "p_adjusted"] >= tests.loc[good, "p_holm"] - 1e-15).all()
    assert (tests.loc[good, "p_adjusted"] > tests.loc[good, "p_value"]).any()  # the adjustment bites somewhere


# -- cohort tables: baseline, fold change, exclusions, derived read-outs ------------------------------------------


BASELINE_VISITS = (("SCR", -7), ("D0", 0), ("D5", 5))


def test_baseline_by_max_day_averages_the_visits_before_the_first_dose():
    table = course({"A": [4.0, 6.0, 8.0], "B": [5.5, 4.5, 7.5]}, visits=BASELINE_VISITS)
    long = longitudinal(readouts(table))
    treg = rows_of(long)
    assert treg.loc[("A", "SCR"), "is_baseline"] and treg.loc[("A", "D0"), "is_baseline"]
    assert not treg.loc[("A", "D5"), "is_baseline"]
    a = treg.loc[("A", "D5")]
    assert a["baseline"] == pytest.approx(5.0) and a["value"] == pytest.approx(8.0)
    assert a["fold_change"] == pytest.approx(1.6) and a["log2_fc"] == pytest.approx(math.log2(1.6))
    assert a["delta_pp"] == pytest.approx(3.0)
    assert treg.loc[("A", "SCR"), "fold_change"] == pytest.approx(0.8)
    assert treg.loc[("B", "D5"), "fold_change"] == pytest.approx(1.5)
    assert treg.loc[("B", "D5"), "delta_pp"] == pytest.approx(2.5)
    # the frequency's interval and events are carried: % of CD4 with n = CD4 events
    assert (a["value_low"], a["value_high"]) == (pytest.approx(7.2), pytest.approx(8.8))
    assert a["n"] == 5000 and a["unit"] == "% of CD4"
    # above CD4: % of parent, n = parent events
    cd4 = rows_of(long, "cd4").loc[("A", "D5")]
    assert cd4["unit"] == "% of parent" and cd4["n"] == round(5000 / 0.6)
    assert cd4["value"] == pytest.approx(100 * 5000 / round(5000 / 0.6))
    # only the day-0 visit as baseline
    treg = rows_of(longitudinal(readouts(table), {"max_day": -1}))
    assert treg.loc[("A", "D5"), "baseline"] == pytest.approx(4.0)
    assert treg.loc[("B", "D5"), "fold_change"] == pytest.approx(7.5 / 5.5)


def test_baseline_by_timepoint_label():
    table = course({"A": [4.0, 6.0, 8.0], "B": [5.5, 4.5, 7.5]}, visits=BASELINE_VISITS)
    treg = rows_of(longitudinal(readouts(table), {"timepoint": "D0"}))
    assert treg["is_baseline"].groupby(level="timepoint").all().to_dict() == {"D0": True, "D5": False, "SCR": False}
    assert treg.loc[("A", "D5"), "baseline"] == pytest.approx(6.0)
    assert treg.loc[("A", "D5"), "fold_change"] == pytest.approx(8.0 / 6.0)
    assert treg.loc[("A", "SCR"), "fold_change"] == pytest.approx(4.0 / 6.0)  # screening is a visit like another
    assert treg.loc[("B", "D5"), "delta_pp"] == pytest.approx(3.0)
    with pytest.raises(StatsError, match=r"baseline timepoint 'V1' is no visit.*D0, D5, SCR"):
        longitudinal(readouts(table), {"timepoint": "V1"})
    # through run_stats and its settings
    out = run_stats(table, {"baseline": {"timepoint": "D0"}})
    assert rows_of(out["longitudinal"]).loc[("A", "D5"), "baseline"] == pytest.approx(6.0)


def test_failed_qc_failed_and_healthy_samples_are_left_out():
    table = pd.concat([
        course({"A": [5.0, 6.0, 8.0, 7.0]}),
        make_cohort(["B"] * 4, ["D0", "D5", "D12", "D33"], [0, 5, 12, 33], [4.0, 8.0, 6.0, 2.0],
                    qc_status=["pass", "fail", "warn", "pass"]),
        make_cohort(["C"] * 3, ["D0", "D0", "D5"], [0, 0, 5], [3.0, 30.0, 6.0], sample_id=["C_D0", "C_D0b", "C_D5"],
                    qc_status=["pass", "fail", "pass"]),  # a QC-failed baseline replicate
        failed_sample("A_D12b", "A", "D12", 12),
        make_cohort(["HC1"], ["D0"], [0], [7.0], role="healthy"),
    ], ignore_index=True)
    long = longitudinal(readouts(table))
    assert set(long["subject"]) == {"A", "B", "C"}  # the healthy control is not a subject
    assert "A_D12b" not in set(long["sample_id"]) and "B_D5" not in set(long["sample_id"])
    assert "C_D0b" not in set(long["sample_id"])
    treg = rows_of(long)
    assert treg.loc[("B", "D12"), "fold_change"] == pytest.approx(1.5)  # QC warn is kept
    assert treg.loc[("C", "D5"), "baseline"] == pytest.approx(3.0)  # the failed replicate does not count
    assert treg.loc[("A", "D12"), "fold_change"] == pytest.approx(1.6)
    # exclude nothing: the QC-failed samples come back (the failed gating never does)
    kept = longitudinal(readouts(table, exclude_qc=()))
    assert {"B_D5", "C_D0b"} <= set(kept["sample_id"]) and "A_D12b" not in set(kept["sample_id"])
    assert kept.query("population == 'treg' and sample_id == 'C_D5'")["baseline"].item() == pytest.approx(16.5)
    # exclude warn too, through the settings
    out = run_stats(table, {"exclude_qc": ["fail", "warn"]})
    assert "B_D12" not in set(out["longitudinal"]["sample_id"])
    wilcoxon = out["tests"][(out["tests"]["population"] == "treg") & (out["tests"]["test"] == "wilcoxon")]
    assert wilcoxon.set_index("timepoint")["n"].to_dict() == {"D5": 2, "D12": 1, "D33": 2}


def test_a_population_not_gated_gives_no_value():
    table = make_cohort(["A", "A", "B", "B", "C", "C"], ["D0", "D5"] * 3, [0, 5] * 3, [5.0, 8.0, 4.0, 6.0, 5.0, 9.0],
                        treg_status=["ok", "na", "ok", "ok", "ok", "ok"])
    long = longitudinal(readouts(table))
    treg = rows_of(long)
    assert math.isnan(treg.loc[("A", "D5"), "value"]) and math.isnan(treg.loc[("A", "D5"), "fold_change"])
    assert treg.loc[("B", "D5"), "fold_change"] == pytest.approx(1.5)
    assert math.isnan(rows_of(long, "treg_tcon_ratio").loc[("A", "D5"), "value"])
    tests = cohort_tests(long)
    assert row(tests, "treg", "D5", "wilcoxon")["n"] == 2


def test_derived_readouts():
    table = make_cohort(["A", "A"], ["D0", "D5"], [0, 5], [4.0, 10.0], [8000, 6000], lymphocytes_per_ul=1250.0,
                        cd25_treg=[2000.0, 5000.0], cd25_tcon=[100.0, 120.0])
    values = readouts(table).set_index(["population", "timepoint"])
    counts = table.pivot_table(index="sample_id", columns="population", values="count")
    for timepoint in ("D0", "D5"):
        c = counts.loc[f"A_{timepoint}"]
        ratio = values.loc[("treg_tcon_ratio", timepoint)]
        assert ratio["value"] == pytest.approx(c["treg"] / c["tcon"]) and ratio["unit"] == "ratio"
        per_ul = values.loc[("treg_per_ul", timepoint)]
        assert per_ul["value"] == pytest.approx(1250.0 * c["treg"] / c["live"]) and per_ul["unit"] == "cells/uL"
        assert values.loc[("cd4_per_ul", timepoint), "value"] == pytest.approx(1250.0 * c["cd4"] / c["live"])
    assert values.loc[("cd25_mfi_treg", "D5"), "value"] == 5000.0
    assert values.loc[("cd25_mfi_tcon", "D0"), "value"] == 100.0
    assert values.loc[("cd25_mfi_treg", "D0"), "unit"] == "median CD25"
    assert values.loc[("treg_tcon_ratio", "D5"), "n"] == counts.loc["A_D5", "treg"]
    # 4% of 8000 = 320 Treg of 7680 Tcon; 10% of 6000 = 600 of 5400
    assert values.loc[("treg_tcon_ratio", "D5"), "value"] == pytest.approx(600 / 5400)
    long = rows_of(longitudinal(readouts(table)), "cd25_mfi_treg")
    assert long.loc[("A", "D5"), "fold_change"] == pytest.approx(2.5)
    # without lymphocytes/uL in the sheet there are no absolute counts
    assert "treg_per_ul" not in set(readouts(table.drop(columns="lymphocytes_per_ul"))["population"])


# -- responders ------------------------------------------------------------------------------------------------------


def expected_rcv(p_base, n_base, p_visit, n_visit, cv_within=0.10):
    cv_a = math.sqrt(((1 - p_visit) / (n_visit * p_visit) + (1 - p_base) / (n_base * p_base)) / 2)
    return math.sqrt(2) * 1.96 * math.sqrt(cv_a**2 + cv_within**2)


def responder_table():
    """precise: FC 1.6 on 200,000 CD4 events; few: FC 1.6 on 100; small: FC 1.4 (precise); big: FC 2.5."""
    visits = VISITS[:3]
    return pd.concat([
        course({"precise": [5.0, 8.0, 5.5], "small": [5.0, 7.0, 5.5], "big": [4.0, 10.0, 4.4]}, visits=visits,
               cd4=200_000),
        course({"few": [5.0, 8.0, 5.0]}, visits=visits, cd4=100),
    ], ignore_index=True)


def test_responder_call():
    out = responders(longitudinal(readouts(responder_table()))).set_index("subject")
    assert set(out["timepoint"]) == {"D5"}  # the visit with the highest median fold change
    assert out["fold_change"].to_dict() == pytest.approx({"big": 2.5, "few": 1.6, "precise": 1.6, "small": 1.4})
    assert out["responder"].to_dict() == {"big": True, "few": False, "precise": True, "small": False}
    assert out["responder_2x"].to_dict() == {"big": True, "few": False, "precise": False, "small": False}
    assert out.loc["precise", "rcv"] == pytest.approx(expected_rcv(0.05, 200_000, 0.08, 200_000), rel=1e-9)
    assert out.loc["few", "rcv"] == pytest.approx(expected_rcv(0.05, 100, 0.08, 100), rel=1e-9)
    assert out.loc["precise", "rcv"] < 0.3 < 0.6 < out.loc["few", "rcv"]
    assert out.loc["few", "cv_analytic"] == pytest.approx(math.sqrt((0.92 / 8 + 0.95 / 5) / 2))
    # a stricter threshold and the other visit
    strict = responders(longitudinal(readouts(responder_table())), {"fold_change": 2.0}).set_index("subject")
    assert strict["responder"].to_dict() == {"big": True, "few": False, "precise": False, "small": False}
    late = responders(longitudinal(readouts(responder_table())), {"timepoint": "D12"})
    assert set(late["timepoint"]) == {"D12"} and not late["responder"].any()


def test_default_responder_visit_is_the_highest_median_fold_change():
    table = course({"A": [5.0, 6.0, 9.0, 5.0], "B": [4.0, 5.0, 8.0, 4.0], "C": [6.0, 12.0, 9.0, 6.0]}, cd4=50_000)
    out = responders(longitudinal(readouts(table)))
    assert set(out["timepoint"]) == {"D12"}  # medians: D5 1.25, D12 1.8, D33 1.0
    assert out.set_index("subject")["responder"].to_dict() == {"A": True, "B": True, "C": True}
    long = longitudinal(readouts(table))
    with pytest.raises(StatsError, match="responder population 'nk'.*treg"):
        responders(long, {"population": "nk"})
    with pytest.raises(StatsError, match="responder timepoint 'D99' is no visit after baseline; visits: D5, D12, D33"):
        responders(long, {"timepoint": "D99"})


# -- settings and errors ----------------------------------------------------------------------------------------------


def test_settings_merge_and_refuse_unknown_keys():
    assert settings(None) == DEFAULTS
    merged = settings({"responder": {"fold_change": 2.0}, "confidence": 0.9})
    assert merged["responder"] == {**DEFAULTS["responder"], "fold_change": 2.0} and merged["confidence"] == 0.9
    merged["baseline"]["max_day"] = 99
    assert DEFAULTS["baseline"]["max_day"] == 0  # a copy
    with pytest.raises(StatsError) as error:
        settings({"responders": {}})
    assert "'responders'" in str(error.value) and "known: baseline, confidence, exclude_qc, responder" in str(error.value)
    with pytest.raises(StatsError) as error:
        settings({"responder": {"fc": 2}})
    assert "fc" in str(error.value)
    assert all(key in str(error.value) for key in ("population", "timepoint", "fold_change", "cv_within"))
    with pytest.raises(StatsError, match="baseline must be a mapping"):
        settings({"baseline": 0})
    with pytest.raises(StatsError, match="unknown setting"):
        run_stats(course({"A": [5.0, 6.0, 5.0, 5.0]}), {"baseline": {"day": 0}})


def test_missing_column_names_what_was_found():
    table = course({"A": [5.0, 6.0, 5.0, 5.0]})
    with pytest.raises(StatsError) as error:
        readouts(table.drop(columns=["day"]))
    message = str(error.value)
    assert "lacks column(s) day" in message
    assert "found: " + ", ".join(c for c in table.columns if c != "day") in message
    with pytest.raises(StatsError, match=r"lacks column\(s\) count, subject"):
        run_stats(table.drop(columns=["subject", "count"]))


def test_no_baseline_visit_is_an_error():
    table = course({"A": [5.0, 6.0, 5.0]}, visits=VISITS[1:])
    with pytest.raises(StatsError, match="no baseline visit"):
        run_stats(table)


# -- null cohorts ------------------------------------------------------------------------------------------------------


def null_cohorts(rng: np.random.Generator, cohorts: int, subjects: int = 12, cd4: int = 5000) -> pd.DataFrame:
    """Cohort table of ``cohorts`` x ``subjects`` x 4 visits without any effect: each subject's
    Treg fraction is log-normal around 5% (sd 0.3), each visit that times log-normal noise (sd 0.15),
    counted binomially on Poisson(cd4) CD4 events. Subject ``C012-S03`` is subject 3 of cohort 12."""
    shape = (cohorts, subjects, len(VISITS))
    base = 0.05 * np.exp(rng.normal(0.0, 0.3, shape[:2] + (1,)))
    p = np.clip(base * np.exp(rng.normal(0.0, 0.15, shape)), 0.0, 1.0)
    n = rng.poisson(cd4, shape)
    k = rng.binomial(n, p)
    c, s, v = (a.ravel() for a in np.indices(shape))
    subject = np.char.add(np.char.add(np.char.mod("C%03d", c), "-S"), np.char.mod("%02d", s))
    timepoint = np.array([t for t, _ in VISITS])[v]
    day = np.array([d for _, d in VISITS])[v]
    return make_cohort(subject, timepoint, day, 100.0 * k.ravel() / n.ravel(), n.ravel())


def test_null_cohorts_reject_at_about_five_percent():
    """300 cohorts of 12 subjects x 3 follow-up visits with no effect (about 20 s).

    Measured with this set-up: seed 0 (this test) Wilcoxon 5.1%, mixed model 7.0% of 900 tests;
    seeds 1-4 Wilcoxon 4.2-4.8%, mixed model 5.2-6.7%. The mixed model's Wald z-test with 12
    subjects is somewhat liberal. The visits share the baseline, so the 900 tests are not
    independent: the Wilcoxon bounds are about 3 standard errors of 600 independent tests; the
    mixed model's upper bound adds that to its largest measured rate.
    """
    started = time.perf_counter()
    table = null_cohorts(np.random.default_rng(0), 300)
    long = longitudinal(readouts(table))
    long = long[long["population"] == "treg"]
    cohort = long["subject"].str[:4]
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort_tests(long[cohort == "C000"])  # warm-up: its imports and caches are frozen too
        gc.freeze()
        for _, frame in long.groupby(cohort, sort=False):
            results.append(cohort_tests(frame))
    tests = pd.concat(results, ignore_index=True)
    elapsed = time.perf_counter() - started
    counts = tests.groupby("test")["p_value"].count().to_dict()
    assert counts == {"mixed_model": 900, "wilcoxon": 900}
    rate = tests.groupby("test")["p_value"].apply(lambda p: float((p < 0.05).mean())).to_dict()
    print(f"null rejection at 0.05: wilcoxon {rate['wilcoxon']:.3f}, mixed model {rate['mixed_model']:.3f} "
          f"({elapsed:.1f} s)")
    assert 0.02 <= rate["wilcoxon"] <= 0.09, rate
    assert 0.02 <= rate["mixed_model"] <= 0.12, rate
    # the p-values are spread over (0, 1), not piled up at one end
    wilcoxon = tests.loc[tests["test"] == "wilcoxon", "p_value"]
    assert 0.4 <= float((wilcoxon > 0.5).mean()) <= 0.6


# -- a simulated IL-2 course through the real chain ---------------------------------------------------------------------

CHAIN_SEED = 6  # 8 subjects: with seeds 1, 2 and 4 most subjects drew the low-responder effect (FC ~1.1) and
# the D5 Wilcoxon has no power (p 0.05-0.15); the fixture checks that the truth of this seed shows the effect


@pytest.fixture(scope="module")
def il2_course(tmp_path_factory):
    """simulate -> gate each file -> cohort table -> run_stats, as the workflow does (about 20 s)."""
    out = tmp_path_factory.mktemp("il2_course")
    started = time.perf_counter()
    assert main(["simulate", "--out", str(out), "--subjects", "8", "--visits", "il2-course", "--events", "20000",
                 "--seed", str(CHAIN_SEED)]) == 0
    sheet = load_sample_sheet(out / "samples.tsv")
    results = out / "results"
    for sample_id, sample in sheet.iterrows():
        gated = treganalysis.gate_sample(treganalysis.read_fcs(sample["fcs"]))
        (results / sample_id).mkdir(parents=True)
        write_tsv_atomic(results / sample_id / "populations.tsv", gated.populations)
    cohort = cohort_table(sheet, results)
    gc.freeze()
    tables = run_stats(cohort)
    truth = pd.read_csv(out / "truth.tsv", sep="\t")
    return {"out": out, "cohort": cohort, "truth": truth, **tables, "seconds": time.perf_counter() - started}


def true_fold_change(truth: pd.DataFrame, day: int) -> pd.Series:
    pct = truth.set_index(["subject", "day"])["treg_pct_cd4"]
    return (pct.xs(day, level="day") / pct.xs(0, level="day")).sort_index()


def test_simulated_course_finds_the_true_fold_change(il2_course):
    truth, long, tests = il2_course["truth"], il2_course["longitudinal"], il2_course["tests"]
    assert il2_course["cohort"]["sample_id"].nunique() == 32
    true_fc = true_fold_change(truth, 5)
    true_pct = truth.set_index(["subject", "day"])["treg_pct_cd4"]
    # the truth of this seed: Treg rise at D5 in (nearly) every subject
    assert sps.wilcoxon(true_pct.xs(5, level="day") - true_pct.xs(0, level="day")).pvalue < 0.05
    estimated = rows_of(long).xs("D5", level="timepoint")["fold_change"].sort_index()
    assert list(estimated.index) == list(true_fc.index)
    assert estimated.median() == pytest.approx(true_fc.median(), rel=0.10)
    # subject by subject, the gated fold change follows the true one
    assert np.corrcoef(np.log(estimated), np.log(true_fc))[0, 1] > 0.95
    wilcoxon = row(tests, "treg", "D5", "wilcoxon")
    assert wilcoxon["n"] == 8 and wilcoxon["p_value"] < 0.05 and wilcoxon["estimate"] > 0
    model = row(tests, "treg", "D5", "mixed_model")
    assert model["estimate"] > 0 and model["p_value"] < 0.05 and model["ci_low"] > 0
    # balanced data: the visit's coefficient is the mean logit difference, here of the gated
    # fractions; it is close to the true one
    logit = np.log(true_pct / (100.0 - true_pct))
    true_logit_change = float((logit.xs(5, level="day") - logit.xs(0, level="day")).mean())
    assert model["estimate"] == pytest.approx(true_logit_change, abs=0.1)
    # by D33 the effect has washed out (half-life 6 days: exp(-ln2 * 28 / 6) = 4% of the peak on the log scale)
    assert row(tests, "treg", "D33", "wilcoxon")["estimate"] == pytest.approx(0.0, abs=0.5)
    assert rows_of(long).xs("D33", level="timepoint")["fold_change"].median() == pytest.approx(
        true_fold_change(truth, 33).median(), rel=0.10)


def test_simulated_course_responders(il2_course):
    truth, responder = il2_course["truth"], il2_course["responders"].set_index("subject")
    assert set(responder["timepoint"]) == {"D5"}
    true_fc = true_fold_change(truth, 5)
    # clear cases agree with the truth: well above 1.5 responds, below 1.3 does not
    clear_yes, clear_no = true_fc[true_fc > 1.9].index, true_fc[true_fc < 1.3].index
    assert len(clear_yes) and len(clear_no)
    assert responder.loc[clear_yes, "responder"].all() and not responder.loc[clear_no, "responder"].any()


# -- the command line ------------------------------------------------------------------------------------------------------

LONGITUDINAL_DOC = ["subject", "timepoint", "day", "population", "value", "baseline", "fold_change", "log2_fc",
                    "delta_pp", "value_low", "value_high"]
TESTS_DOC = ["population", "timepoint", "test", "n", "statistic", "p_value", "p_adjusted", "estimate", "ci_low",
             "ci_high"]
RESPONDERS_DOC = ["subject", "timepoint", "fold_change", "rcv", "responder"]


def in_order(columns, documented) -> bool:
    return all(c in columns for c in documented) and [c for c in columns if c in documented] == documented


@pytest.fixture(scope="module")
def cli_cohort(tmp_path_factory):
    rng = np.random.default_rng(3)
    pct = np.round(5 * np.exp(rng.normal(0, 0.2, (6, 1))) * [[1.0, 2.0, 1.2]] * np.exp(rng.normal(0, 0.05, (6, 3))), 3)
    table = course({f"P{i}": list(pct[i]) for i in range(6)}, visits=VISITS[:3], cd4=20_000)
    path = tmp_path_factory.mktemp("cli") / "populations.tsv"
    write_tsv_atomic(path, table)
    return path, pct


def test_cli_writes_the_three_tables(cli_cohort, tmp_path, capsys):
    path, pct = cli_cohort
    out = tmp_path / "stats"
    assert main(["stats", "--cohort", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 of 6 subjects respond at D5" in printed
    longitudinal_tsv = pd.read_csv(out / "longitudinal.tsv", sep="\t")
    tests_tsv = pd.read_csv(out / "tests.tsv", sep="\t")
    responders_tsv = pd.read_csv(out / "responders.tsv", sep="\t")
    assert in_order(list(longitudinal_tsv.columns), LONGITUDINAL_DOC)
    assert in_order(list(tests_tsv.columns), TESTS_DOC)
    assert in_order(list(responders_tsv.columns), RESPONDERS_DOC)
    # the numbers are those of the data
    treg = rows_of(longitudinal_tsv)
    for i in range(6):
        assert treg.loc[(f"P{i}", "D5"), "fold_change"] == pytest.approx(pct[i, 1] / pct[i, 0], rel=1e-9)
    wilcoxon = row(tests_tsv, "treg", "D5", "wilcoxon")
    assert wilcoxon["p_value"] == pytest.approx(sps.wilcoxon(pct[:, 1] - pct[:, 0]).pvalue)  # 2 / 64
    assert len(responders_tsv) == 6 and responders_tsv["responder"].all()
    # the same as the library
    in_process = run_stats(pd.read_csv(path, sep="\t"))["tests"]
    assert tests_tsv[["population", "timepoint", "test"]].equals(in_process[["population", "timepoint", "test"]])
    numbers = ["n", "statistic", "p_value", "p_holm", "p_adjusted", "estimate", "ci_low", "ci_high"]
    np.testing.assert_allclose(tests_tsv[numbers].to_numpy(float), in_process[numbers].to_numpy(float), rtol=1e-12)


def test_cli_config_json_changes_the_call(cli_cohort, tmp_path, capsys):
    path, pct = cli_cohort
    out = tmp_path / "stats"
    settings_json = json.dumps({"responder": {"fold_change": 3.0, "timepoint": "D12"}, "confidence": 0.9})
    assert main(["stats", "--cohort", str(path), "--out", str(out), "--config-json", settings_json]) == 0
    assert "0 of 6 subjects respond at D12" in capsys.readouterr().out
    tests_tsv = pd.read_csv(out / "tests.tsv", sep="\t")
    d5 = row(tests_tsv, "treg", "D5", "wilcoxon")
    assert (d5["ci_low"], d5["ci_high"]) == pytest.approx(hodges_lehmann(pct[:, 1] - pct[:, 0], 0.9)[1:])


@pytest.mark.parametrize("argv, expected", [
    (["--cohort", "{missing}"], "cannot read the cohort table"),
    (["--config-json", "{not json"], "--config-json: not a JSON mapping"),
    (["--config-json", "[1, 2]"], "--config-json: not a JSON mapping"),
    (["--config-json", '{"responders": {}}'], "unknown setting 'responders'; known: baseline, confidence"),
    (["--config-json", '{"baseline": {"timepoint": "V9"}}'], "baseline timepoint 'V9' is no visit"),
])
def test_cli_errors_are_one_line(cli_cohort, tmp_path, capsys, argv, expected):
    path, _ = cli_cohort
    missing = tmp_path / "nowhere" / "populations.tsv"
    argv = [a.replace("{missing}", str(missing)) for a in argv]
    if "--cohort" not in argv:
        argv = ["--cohort", str(path), *argv]
    code = main(["stats", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("treganalysis: error: ") and expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    if str(missing) in argv:
        assert str(missing) in err
    assert not (tmp_path / "out" / "tests.tsv").exists()


# -- settings and units (bugs found by these tests, fixed) ---------------------------------------------------------------


def test_exclude_qc_as_a_string():
    table = make_cohort(["A", "A", "B", "B", "C", "C"], ["D0", "D5"] * 3, [0, 5] * 3, [5.0, 8.0, 5.0, 50.0, 5.0, 9.0],
                        qc_status=["pass", "pass", "pass", "fail", "pass", "pass"])
    try:
        out = run_stats(table, {"exclude_qc": "fail"})
    except StatsError:
        return  # refusing the setting is a fix too
    assert "B_D5" not in set(out["longitudinal"]["sample_id"])


@pytest.mark.parametrize("config", [{"confidence": "x"}, {"confidence": 1.5}, {"baseline": {"max_day": "x"}},
                                    {"responder": {"fold_change": "x"}}])
def test_cli_wrong_typed_settings_are_one_line_errors(cli_cohort, tmp_path, capsys, config):
    path, _ = cli_cohort
    code = main(["stats", "--cohort", str(path), "--out", str(tmp_path), "--config-json", json.dumps(config)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("treganalysis: error: ") and len(err.strip().splitlines()) == 1


def test_unit_of_a_readout_does_not_depend_on_an_na_sample():
    table = make_cohort(["A", "A", "B", "B", "C", "C"], ["D0", "D5"] * 3, [0, 5] * 3, [5.0, 8.0, 4.0, 6.0, 5.0, 9.0],
                        treg_status=["na", "ok", "ok", "ok", "ok", "ok"])
    long = longitudinal(readouts(table))
    assert set(long.loc[long["population"] == "treg", "unit"]) == {"% of CD4"}
    assert row(cohort_tests(long[long["population"] == "treg"]), "treg", "D5", "wilcoxon")["estimate_scale"] == (
        "difference (% of CD4)")


def test_cli_joins_the_per_sample_tables_as_the_cohort_job(cli_cohort, tmp_path, capsys):
    """`stats --results DIR --sheet TSV` (the workflow's stats job, beside the cohort job) writes the
    tables `cohort` then `stats --cohort` write, byte for byte."""
    path, _ = cli_cohort
    table = pd.read_csv(path, sep="\t")
    sheet_columns = ["sample_id", "subject", "timepoint", "day", "arm", "lymphocytes_per_ul", "role"]
    sheet = table[sheet_columns].drop_duplicates("sample_id").assign(fcs=lambda t: t["sample_id"] + ".fcs")
    sheet["day"] = sheet["day"].astype(int)
    write_tsv_atomic(tmp_path / "sheet.tsv", sheet)
    for sample_id, rows in table.groupby("sample_id"):
        (tmp_path / "results" / sample_id).mkdir(parents=True)
        write_tsv_atomic(tmp_path / "results" / sample_id / "populations.tsv", rows.drop(columns=sheet_columns))
    common = ["--sheet", str(tmp_path / "sheet.tsv"), "--results", str(tmp_path / "results")]
    assert main(["cohort", *common, "--out", str(tmp_path / "cohort.tsv")]) == 0
    assert main(["stats", "--cohort", str(tmp_path / "cohort.tsv"), "--out", str(tmp_path / "after")]) == 0
    assert main(["stats", *common, "--out", str(tmp_path / "beside")]) == 0
    assert "6 of 6 subjects respond at D5" in capsys.readouterr().out
    for name in ("longitudinal", "tests", "responders"):
        assert (tmp_path / "beside" / f"{name}.tsv").read_bytes() == (tmp_path / "after" / f"{name}.tsv").read_bytes()


@pytest.mark.parametrize("argv, expected", [
    (["--results", "{dir}"], "--results needs --sheet"),
    (["--cohort", "{cohort}", "--sheet", "{cohort}"], "--sheet goes with --results"),
    (["--results", "{dir}/nowhere", "--sheet", "{dir}/sheet.tsv"], "sample sheet not found"),
])
def test_cli_results_and_sheet_errors_are_one_line(cli_cohort, tmp_path, capsys, argv, expected):
    path, _ = cli_cohort
    argv = [a.replace("{dir}", str(tmp_path)).replace("{cohort}", str(path)) for a in argv]
    assert main(["stats", *argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("treganalysis: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1
