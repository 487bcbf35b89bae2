"""Longitudinal Treg-expansion statistics on the cohort table.

From ``results/cohort/populations.tsv`` (one row per sample x population): per subject and visit
the value of every read-out against the subject's baseline (:func:`longitudinal`); per visit
the paired tests against baseline, a linear mixed model, and the arm comparisons
(:func:`cohort_tests`); and the responder call per subject (:func:`responders`). The tests are
scipy's and statsmodels'; only the Hodges-Lehmann interval is computed here, from the exact
signed-rank distribution. Every threshold is a configurable default (``DEFAULTS``, the
``stats:`` section of ``config.yaml``; domain.md 5.2).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from .errors import TregAnalysisError

__all__ = ["DEFAULTS", "StatsError", "cohort_tests", "hodges_lehmann", "longitudinal", "readouts", "responders",
           "run_stats"]

DEFAULTS: dict[str, Any] = {
    # the baseline of each subject: the visits with this timepoint label, or else those with
    # day <= max_day (before the first dose), averaged when several
    "baseline": {"timepoint": None, "max_day": 0},
    # samples whose QC status is one of these take no part in the statistics
    "exclude_qc": ["fail"],
    # responder call: fold change of the population at the visit (None: the visit with the
    # highest median fold change) >= fold_change and beyond the reference change value
    # RCV = sqrt(2) * 1.96 * sqrt(CV_a^2 + CV_i^2), CV_a from the binomial counting error and
    # CV_i the within-subject biological variation (10%: a placeholder, domain.md 5.2 [U])
    "responder": {"population": "treg", "timepoint": None, "fold_change": 1.5, "cv_within": 0.10},
    "confidence": 0.95,
}

PERCENT_OF_CD4 = "% of CD4"
LONGITUDINAL_COLUMNS = ["subject", "timepoint", "day", "population", "value", "baseline", "fold_change", "log2_fc",
                        "delta_pp", "value_low", "value_high", "n", "unit", "arm", "is_baseline", "sample_id"]
TEST_COLUMNS = ["population", "timepoint", "test", "n", "statistic", "p_value", "p_holm", "p_adjusted", "estimate",
                "ci_low", "ci_high", "estimate_scale", "note"]
RESPONDER_COLUMNS = ["subject", "timepoint", "fold_change", "rcv", "responder", "responder_2x", "cv_analytic", "value",
                     "baseline", "arm"]


class StatsError(TregAnalysisError):
    """A cohort table or statistics setting that cannot be used."""


def settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULTS`` updated one level deep by ``config``; unknown keys refused."""
    out = copy.deepcopy(DEFAULTS)
    for key, value in (config or {}).items():
        if key not in out:
            raise StatsError(f"stats: unknown setting {key!r}; known: {', '.join(sorted(out))}")
        if isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise StatsError(f"stats: {key} must be a mapping, e.g. {out[key]}")
            unknown = sorted(set(value) - set(out[key]))
            if unknown:
                raise StatsError(f"stats: {key}: unknown setting {', '.join(unknown)}; known: {', '.join(out[key])}")
            out[key].update(value)
        else:
            out[key] = value
    _check(out)
    return out


def _check(cfg: dict[str, Any]) -> None:
    """Types and ranges of the settings, each problem named with the form expected."""
    if isinstance(cfg["exclude_qc"], str):  # `exclude_qc: fail` in YAML
        cfg["exclude_qc"] = [cfg["exclude_qc"]]
    problems = []

    def number(where: str, value: Any, low: float | None = None, high: float | None = None) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        if not ok or (low is not None and value <= low) or (high is not None and value >= high):
            span = f" between {low} and {high}" if high is not None else f" above {low}" if low is not None else ""
            problems.append(f"{where} must be a number{span}, not {value!r}")

    def label(where: str, value: Any) -> None:
        if value is not None and not isinstance(value, (str, int)):
            problems.append(f"{where} must be a timepoint label or null, not {value!r}")

    if not isinstance(cfg["exclude_qc"], (list, tuple)) or not set(cfg["exclude_qc"]) <= {"pass", "warn", "fail"}:
        problems.append(f"exclude_qc must be a list of QC statuses (pass, warn, fail), not {cfg['exclude_qc']!r}")
    number("confidence", cfg["confidence"], 0.0, 1.0)
    number("baseline.max_day", cfg["baseline"]["max_day"])
    label("baseline.timepoint", cfg["baseline"]["timepoint"])
    number("responder.fold_change", cfg["responder"]["fold_change"], 0.0)
    number("responder.cv_within", cfg["responder"]["cv_within"], -1e-12)
    label("responder.timepoint", cfg["responder"]["timepoint"])
    if not isinstance(cfg["responder"]["population"], str):
        problems.append(f"responder.population must be a population name, not {cfg['responder']['population']!r}")
    if problems:
        raise StatsError("stats: " + "; ".join(problems))


# -- read-outs ----------------------------------------------------------------------------------


def readouts(cohort: pd.DataFrame, exclude_qc: tuple[str, ...] | list[str] = ("fail",)) -> pd.DataFrame:
    """One row per sample and read-out: every population's frequency and the derived read-outs.

    Parameters
    ----------
    cohort : DataFrame
        The cohort table (``treganalysis cohort``): ``sample_id, subject, timepoint, day,
        population, status, count, parent_count, pct_parent, pct_cd4`` and medians.
    exclude_qc : sequence of str
        QC statuses whose samples are left out (failed gating is always left out).

    Returns
    -------
    DataFrame
        ``sample_id, subject, timepoint, day, arm, population, unit, value, value_low,
        value_high, n`` (and ``days_since_dose`` when the table has it): populations under CD4 as % of CD4 (``n`` = CD4 events), the others as
        % of parent; ``treg_tcon_ratio``; ``cd25_mfi_treg`` and ``cd25_mfi_tcon`` (median CD25,
        compensated linear units); ``treg_per_ul`` and ``cd4_per_ul`` when the sheet gives
        ``lymphocytes_per_ul`` (lymphocytes/uL x share of live lymphocytes).
    """
    needed = {"sample_id", "subject", "timepoint", "day", "population", "count"}
    missing = sorted(needed - set(cohort.columns))
    if missing:
        raise StatsError(f"the cohort table lacks column(s) {', '.join(missing)}; found: {', '.join(cohort.columns)}")
    table = cohort[cohort["population"].notna() & (cohort["population"].astype(str) != "")].copy()
    if "status" in table:
        table = table[table["status"].fillna("ok") != "failed"]
    if "qc_status" in table and exclude_qc:
        table = table[~table["qc_status"].isin(list(exclude_qc))]
    if "role" in table:
        table = table[table["role"].fillna("patient").astype(str).str.lower() != "healthy"]
    if table.empty:
        return pd.DataFrame(columns=["sample_id", "subject", "timepoint", "day", "arm", "population", "unit",
                                     "value", "value_low", "value_high", "n"])
    ok = table["status"].fillna("ok").eq("ok") if "status" in table else pd.Series(True, index=table.index)
    # a population is under CD4 when any of its samples has a % of CD4 (an NA gate has none)
    under_cd4 = (table.groupby("population")["pct_cd4"].transform(lambda p: p.notna().any()).astype(bool)
                 & (table["population"] != "cd4")) if "pct_cd4" in table else ok & False
    rows = table[["sample_id", "subject", "timepoint", "day", "population"]].copy()
    if "days_since_dose" in table:  # a covariate of the mixed model when the sheet gives it
        rows["days_since_dose"] = pd.to_numeric(table["days_since_dose"], errors="coerce")
    rows["arm"] = table["arm"].astype(str) if "arm" in table else ""
    rows["unit"] = np.where(under_cd4, PERCENT_OF_CD4, "% of parent")
    for column in ("", "_low", "_high"):
        cd4 = table.get(f"pct_cd4{column}", pd.Series(np.nan, index=table.index))
        parent = table.get(f"pct_parent{column}", pd.Series(np.nan, index=table.index))
        rows[f"value{column}"] = np.where(under_cd4, cd4, parent).astype(float)
    samples = table.set_index(["sample_id", "population"])
    cd4_events = samples["count"].xs("cd4", level="population") if "cd4" in set(table["population"]) else None
    rows["n"] = np.where(under_cd4, rows["sample_id"].map(cd4_events) if cd4_events is not None else np.nan,
                         table["parent_count"] if "parent_count" in table else np.nan)
    rows.loc[~ok.to_numpy(), ["value", "value_low", "value_high"]] = np.nan
    derived = _derived(table)
    return pd.concat([rows, derived], ignore_index=True) if len(derived) else rows.reset_index(drop=True)


def _derived(table: pd.DataFrame) -> pd.DataFrame:
    """Treg/Tcon ratio, CD25 medians on Treg and Tcon, absolute counts per uL."""
    info = table.drop_duplicates("sample_id").set_index("sample_id")
    wide = table.pivot_table(index="sample_id", columns="population", values="count", aggfunc="first")
    ok = table.assign(ok=table["status"].fillna("ok").eq("ok") if "status" in table else True).pivot_table(
        index="sample_id", columns="population", values="ok", aggfunc="first")
    out = []

    def add(name: str, unit: str, values: pd.Series, n: pd.Series | None = None) -> None:
        frame = info.loc[values.index, [c for c in ("subject", "timepoint", "day", "days_since_dose")
                                        if c in info]].copy()
        frame["sample_id"] = values.index
        frame["arm"] = info.loc[values.index, "arm"].astype(str) if "arm" in info else ""
        frame["population"], frame["unit"], frame["value"] = name, unit, values.astype(float).to_numpy()
        frame["value_low"] = frame["value_high"] = np.nan
        frame["n"] = n.reindex(values.index).to_numpy() if n is not None else np.nan
        out.append(frame.reset_index(drop=True))

    def good(*names: str) -> pd.Series:
        present = [n for n in names if n in ok.columns]
        if len(present) < len(names):
            return pd.Series(False, index=wide.index)
        return ok[present].fillna(False).astype(bool).all(axis=1)

    if {"treg", "tcon"} <= set(wide.columns):
        ratio = (wide["treg"] / wide["tcon"].where(wide["tcon"] > 0)).where(good("treg", "tcon"))
        add("treg_tcon_ratio", "ratio", ratio, wide["treg"])
    if "median_cd25" in table:
        medians = table.pivot_table(index="sample_id", columns="population", values="median_cd25", aggfunc="first")
        for name in ("treg", "tcon"):
            if name in medians.columns:
                add(f"cd25_mfi_{name}", "median CD25", medians[name].where(good(name)), wide.get(name))
    if "lymphocytes_per_ul" in info and {"live", "cd4"} <= set(wide.columns):
        per_ul = pd.to_numeric(info["lymphocytes_per_ul"], errors="coerce").reindex(wide.index)
        live = wide["live"].where(wide["live"] > 0)
        for name in ("cd4", "treg"):
            if name in wide.columns:
                add(f"{name}_per_ul", "cells/uL", (per_ul * wide[name] / live).where(good("live", name) & per_ul.notna()),
                    wide[name])
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# -- baseline and fold changes ------------------------------------------------------------------


def longitudinal(values: pd.DataFrame, baseline: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Each subject's read-outs per visit against the subject's baseline.

    Parameters
    ----------
    values : DataFrame
        From :func:`readouts`.
    baseline : mapping, optional
        ``timepoint`` (a label: the baseline visits) or ``max_day`` (visits with
        ``day <= max_day``, default 0); several baseline visits are averaged.

    Returns
    -------
    DataFrame
        ``subject, timepoint, day, population, value, baseline, fold_change, log2_fc,
        delta_pp, value_low, value_high, n, unit, arm, is_baseline, sample_id``; ``delta_pp``
        is the difference in the read-out's unit (percentage points for frequencies).
    """
    cfg = {**DEFAULTS["baseline"], **(baseline or {})}
    table = values.copy()
    table["day"] = pd.to_numeric(table["day"], errors="coerce")
    if cfg.get("timepoint") is not None:
        table["is_baseline"] = table["timepoint"].astype(str) == str(cfg["timepoint"])
        if not table["is_baseline"].any():
            raise StatsError(f"stats: baseline timepoint {cfg['timepoint']!r} is no visit of the cohort; "
                             f"visits: {', '.join(sorted(table['timepoint'].astype(str).unique()))}")
    else:
        table["is_baseline"] = table["day"] <= float(cfg.get("max_day", 0))
    base = (table[table["is_baseline"]].groupby(["subject", "population"])["value"].mean().rename("baseline"))
    table = table.join(base, on=["subject", "population"])
    with np.errstate(divide="ignore", invalid="ignore"):
        table["fold_change"] = table["value"] / table["baseline"].where(table["baseline"] > 0)
        table["log2_fc"] = np.log2(table["fold_change"].where(table["fold_change"] > 0))
    table["delta_pp"] = table["value"] - table["baseline"]
    columns = LONGITUDINAL_COLUMNS + [c for c in ("days_since_dose",) if c in table]
    return table[columns].sort_values(["population", "subject", "day"], kind="stable").reset_index(drop=True)


# -- tests ----------------------------------------------------------------------------------------


def hodges_lehmann(differences: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate of the median paired difference and its confidence interval.

    Parameters
    ----------
    differences : ndarray
        Paired differences (visit - baseline).
    confidence : float

    Returns
    -------
    estimate, low, high : float

    Notes
    -----
    The estimate is the median of the Walsh averages ``(d_i + d_j) / 2, i <= j``; the interval
    runs from the ``k``-th smallest to the ``k``-th largest of them, ``k`` the lower critical
    value of the signed-rank statistic (its exact null distribution, the number of subsets of
    ``1..n`` with each rank sum, built by convolution; Hollander & Wolfe).
    """
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = d.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    estimate = float(np.median(walsh))
    # exact null distribution of the signed-rank statistic: one convolution per rank (n is the
    # number of subjects, not of events)
    counts = np.array([1.0])
    for rank in range(1, n + 1):
        counts = np.concatenate([counts, np.zeros(rank)]) + np.concatenate([np.zeros(rank), counts])
    cdf = np.cumsum(counts) / counts.sum()
    alpha = (1.0 - confidence) / 2.0
    k = int(np.searchsorted(cdf, alpha, side="right"))  # P(T <= k - 1) <= alpha < P(T <= k)
    if k < 1 or k > walsh.size:
        return estimate, float("nan"), float("nan")  # too few subjects for this confidence
    return estimate, float(walsh[k - 1]), float(walsh[walsh.size - k])


def _outcome(frame: pd.DataFrame) -> pd.Series:
    """The mixed model's outcome: logit of a frequency (0.5-event continuity correction), log
    of a ratio, intensity or count."""
    if frame["unit"].iloc[0].startswith("%"):
        n = frame["n"].where(frame["n"] > 0)
        p = (frame["value"] / 100.0 * n + 0.5) / (n + 1.0)
        return np.log(p / (1.0 - p))
    return np.log(frame["value"].where(frame["value"] > 0))


def _mixed_model(frame: pd.DataFrame, arms: bool = False) -> tuple[Any, str]:
    data = frame.assign(y=_outcome(frame), visit=np.where(frame["is_baseline"], "baseline",
                                                           frame["timepoint"].astype(str)))
    data = data[np.isfinite(data["y"])]
    formula = "y ~ C(visit, Treatment('baseline'))"
    if "days_since_dose" in data and data["days_since_dose"].notna().all():
        formula += " + days_since_dose"
    if arms:
        formula = "y ~ C(visit, Treatment('baseline')) * C(arm)"
    with warnings.catch_warnings():
        # statsmodels warns on every optimiser retry; the outcome is summarised in the note
        warnings.simplefilter("ignore")
        fit = smf.mixedlm(formula, data, groups=data["subject"]).fit(reml=True)
    notes = []
    if not getattr(fit, "converged", True):
        notes.append("optimiser did not fully converge")
    if float(np.asarray(fit.cov_re).ravel()[0]) < 1e-6:
        notes.append("between-subject variance estimated at 0 (boundary)")
    return fit, "; ".join(notes)


def cohort_tests(long: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Every visit against baseline, for every read-out; and arm against arm when there are two.

    Parameters
    ----------
    long : DataFrame
        From :func:`longitudinal`.
    confidence : float

    Returns
    -------
    DataFrame
        ``population, timepoint, test, n, statistic, p_value, p_holm, p_adjusted, estimate,
        ci_low, ci_high, estimate_scale, note``. Tests: ``wilcoxon`` (two-sided signed-rank on
        visit - baseline; estimate the Hodges-Lehmann median difference, in the read-out's unit),
        ``mixed_model`` (statsmodels MixedLM, random intercept per subject, visit as fixed
        effect; estimate the visit's coefficient on the logit/log scale), and with two arms
        ``mann_whitney`` (fold changes between arms) and ``mixed_model_arm_x_visit`` (the
        interaction). ``p_holm``: Holm across the visits of a read-out and test;
        ``p_adjusted``: then Benjamini-Hochberg across read-outs, per visit and test.
    """
    rows: list[dict[str, Any]] = []
    z = sps.norm.ppf(0.5 + confidence / 2.0)
    follow = long[~long["is_baseline"]]
    for population, frame in long.groupby("population", sort=False):
        visits = [t for t in _visit_order(follow[follow["population"] == population]) if t]
        for timepoint in visits:
            at = frame[(frame["timepoint"].astype(str) == timepoint) & ~frame["is_baseline"]]
            diff = (at["value"] - at["baseline"]).to_numpy(dtype=float)
            diff = diff[np.isfinite(diff)]
            row = {"population": population, "timepoint": timepoint, "test": "wilcoxon", "n": int(diff.size),
                   "estimate_scale": f"difference ({frame['unit'].iloc[0]})"}
            if diff.size >= 2 and np.any(diff != 0):
                result = sps.wilcoxon(diff, alternative="two-sided")
                estimate, low, high = hodges_lehmann(diff, confidence)
                row.update(statistic=float(result.statistic), p_value=float(result.pvalue), estimate=estimate,
                           ci_low=low, ci_high=high)
            else:
                row.update(note="fewer than 2 paired subjects" if diff.size < 2 else "no change at all")
            rows.append(row)
        usable = frame[np.isfinite(frame["value"])]
        if usable["subject"].nunique() >= 3 and len(visits) and usable["is_baseline"].any():
            scale = "logit" if frame["unit"].iloc[0].startswith("%") else "log"
            rows += _model_rows(usable, population, visits, z, "mixed_model", f"{scale} difference from baseline",
                                lambda t: f"C(visit, Treatment('baseline'))[T.{t}]")
        rows += _arm_tests(frame, population, visits, z)
    table = pd.DataFrame(rows)
    columns = TEST_COLUMNS
    for column in columns:
        if column not in table:
            table[column] = np.nan
    table["p_holm"] = np.nan
    for _, index in table.groupby(["population", "test"]).groups.items():
        p = table.loc[index, "p_value"]
        good = p.notna()
        if good.any():
            table.loc[p.index[good], "p_holm"] = multipletests(p[good], method="holm")[1]
    table["p_adjusted"] = np.nan
    for _, index in table.groupby(["timepoint", "test"]).groups.items():
        p = table.loc[index, "p_holm"]
        good = p.notna()
        if good.any():
            table.loc[p.index[good], "p_adjusted"] = multipletests(p[good], method="fdr_bh")[1]
    return table[columns]


def _arm_tests(frame: pd.DataFrame, population: str, visits: list[str], z: float) -> list[dict[str, Any]]:
    arms = frame.groupby("arm")["subject"].nunique()
    arms = arms[(arms >= 3) & (arms.index.astype(str) != "") & (arms.index.astype(str) != "nan")]
    if len(arms) != 2:
        return []
    frame = frame[frame["arm"].isin(arms.index)]
    rows = []
    first, second = sorted(arms.index)
    for timepoint in visits:
        at = frame[(frame["timepoint"].astype(str) == timepoint) & ~frame["is_baseline"]]
        a = at[at["arm"] == first]["fold_change"].dropna().to_numpy()
        b = at[at["arm"] == second]["fold_change"].dropna().to_numpy()
        row = {"population": population, "timepoint": timepoint, "test": "mann_whitney", "n": int(a.size + b.size),
               "estimate_scale": f"median fold change {second} - {first}"}
        if a.size and b.size:
            result = sps.mannwhitneyu(b, a, alternative="two-sided")
            row.update(statistic=float(result.statistic), p_value=float(result.pvalue),
                       estimate=float(np.median(b) - np.median(a)))
        rows.append(row)
    usable = frame[np.isfinite(frame["value"])]
    return rows + _model_rows(usable, population, visits, z, "mixed_model_arm_x_visit",
                              f"difference of {second} from {first} in the change from baseline",
                              lambda t: f"C(visit, Treatment('baseline'))[T.{t}]:C(arm)[T.{second}]", arms=True)


def _model_rows(usable: pd.DataFrame, population: str, visits: list[str], z: float, test: str, scale: str,
                term, arms: bool = False) -> list[dict[str, Any]]:
    """One row per visit from one mixed-model fit: the visit's term (``term(visit)``) with its
    Wald interval; a fit that fails leaves the rows empty with the reason."""
    try:
        fit, note = _mixed_model(usable, arms=arms)
    except (ValueError, np.linalg.LinAlgError) as exc:
        fit, note = None, f"mixed model failed: {exc}"[:200]
    rows = []
    for timepoint in visits:
        name = term(timepoint)
        row = {"population": population, "timepoint": timepoint, "test": test,
               "n": int(usable[usable["timepoint"].astype(str) == timepoint]["subject"].nunique()),
               "estimate_scale": scale, "note": note}
        if fit is not None and name in fit.params.index:
            estimate, se = float(fit.params[name]), float(fit.bse[name])
            row.update(statistic=float(fit.tvalues[name]), p_value=float(fit.pvalues[name]), estimate=estimate,
                       ci_low=estimate - z * se, ci_high=estimate + z * se)
        rows.append(row)
    return rows


def _visit_order(frame: pd.DataFrame) -> list[str]:
    """Timepoint labels in order of their median study day."""
    days = frame.groupby(frame["timepoint"].astype(str))["day"].median().sort_values(kind="stable")
    return list(days.index)


# -- responders -----------------------------------------------------------------------------------


def responders(long: pd.DataFrame, responder: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The immunological responder call per subject.

    Parameters
    ----------
    long : DataFrame
        From :func:`longitudinal`.
    responder : mapping, optional
        ``population`` (default ``treg``), ``timepoint`` (default: the visit with the highest
        median fold change), ``fold_change`` (1.5), ``cv_within`` (0.10).

    Returns
    -------
    DataFrame
        ``subject, timepoint, fold_change, rcv, responder, responder_2x, cv_analytic, value,
        baseline, arm``.

    Notes
    -----
    A subject responds when the fold change reaches ``fold_change`` and the relative change
    exceeds the reference change value ``RCV = sqrt(2) * 1.96 * sqrt(CV_a^2 + CV_i^2)``
    (domain.md 5.2). ``CV_a`` is the binomial counting error of a frequency, ``sqrt((1 - p) /
    (n p))`` with ``n`` the events of its denominator, taken as the root mean square of the
    baseline's and the visit's; ``CV_i`` is ``cv_within``.
    """
    cfg = {**DEFAULTS["responder"], **(responder or {})}
    frame = long[long["population"] == cfg["population"]]
    if frame.empty:
        raise StatsError(f"stats: responder population {cfg['population']!r} is not in the cohort; "
                         f"read-outs: {', '.join(sorted(long['population'].unique()))}")
    follow = frame[~frame["is_baseline"]]
    timepoint = cfg["timepoint"]
    if timepoint is None:
        medians = follow.groupby(follow["timepoint"].astype(str))["fold_change"].median().dropna()
        if medians.empty:  # no follow-up visit with a baseline: nobody to call
            return pd.DataFrame(columns=RESPONDER_COLUMNS)
        timepoint = str(medians.idxmax())
    at = follow[follow["timepoint"].astype(str) == str(timepoint)]
    if at.empty:
        raise StatsError(f"stats: responder timepoint {timepoint!r} is no visit after baseline; visits: "
                         f"{', '.join(_visit_order(follow))}")
    base = frame[frame["is_baseline"]].groupby("subject")["n"].mean()
    cv_visit = _binomial_cv(at["value"], at["n"])
    cv_base = _binomial_cv(at["baseline"], at["subject"].map(base))
    cv_a = np.sqrt((cv_visit**2 + cv_base**2) / 2.0)
    rcv = np.sqrt(2.0) * 1.96 * np.sqrt(cv_a**2 + float(cfg["cv_within"]) ** 2)
    fc = at["fold_change"].to_numpy(dtype=float)
    out = pd.DataFrame({"subject": at["subject"].to_numpy(), "timepoint": str(timepoint), "fold_change": fc,
                        "rcv": rcv.to_numpy(dtype=float)})
    beyond = np.abs(fc - 1.0) > out["rcv"].to_numpy()
    out["responder"] = (fc >= float(cfg["fold_change"])) & beyond
    out["responder_2x"] = (fc >= 2.0) & beyond
    out.loc[~np.isfinite(fc), ["responder", "responder_2x"]] = False
    out["cv_analytic"] = cv_a.to_numpy(dtype=float)
    out["value"], out["baseline"] = at["value"].to_numpy(), at["baseline"].to_numpy()
    out["arm"] = at["arm"].to_numpy()
    return out[RESPONDER_COLUMNS].sort_values("subject").reset_index(drop=True)


def _binomial_cv(percent: pd.Series, n: pd.Series) -> pd.Series:
    p = percent.astype(float) / 100.0
    n = n.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((1.0 - p) / (n * p))


def run_stats(cohort: pd.DataFrame, config: Mapping[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """All of it: ``{"longitudinal": ..., "tests": ..., "responders": ...}`` from the cohort table.

    A cohort that gives nothing to compare (every sample failed, no follow-up visit) gives
    empty tables with their columns, so a run's report still shows its samples; a cohort with
    samples but no baseline visit is an error (the baseline setting must be wrong).
    """
    cfg = settings(config)
    values = readouts(cohort, tuple(cfg["exclude_qc"] or ()))
    if values.empty:
        return {"longitudinal": pd.DataFrame(columns=LONGITUDINAL_COLUMNS), "tests": pd.DataFrame(columns=TEST_COLUMNS),
                "responders": pd.DataFrame(columns=RESPONDER_COLUMNS)}
    long = longitudinal(values, cfg["baseline"])
    if not long["is_baseline"].any():
        raise StatsError("no baseline visit: set stats: baseline: timepoint, or give visits with day <= "
                         f"{cfg['baseline']['max_day']} in the sheet")
    return {"longitudinal": long, "tests": cohort_tests(long, float(cfg["confidence"])),
            "responders": responders(long, cfg["responder"])}
