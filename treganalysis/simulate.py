"""Synthetic IL-2 trial cohorts with per-event truth.

No public data set carries expert-gated Tregs, so gating accuracy, statistics and the demo run on
cohorts simulated here. Every number is a configurable default (:data:`DEFAULTS`, overridden by a
YAML file); the starting values are those of ``domain.md`` section 5.3, most of them marked
unconfirmed there, so they are defaults, not facts.

Signal chain of one sample
--------------------------
1. Event classes are drawn with a multinomial from the sample's class fractions (debris,
   doublets, dead cells, monocytes, granulocytes, B, NK, CD8 T, double-negative T, and within
   CD4 T: Treg, CD25-FOXP3+, activated and resting Tcon).
2. Each class gets scatter (FSC-A/FSC-H/SSC-A) and true dye signals per marker: negatives
   ``N(0, sigma)``, positives log-normal. CD25 is a continuum (dim on activated Tcon, high on
   most Treg, overlapping), FOXP3 has a broad negative.
3. Dye signals spill into detectors (``true @ S``), are scaled by the batch's detector gains,
   and get detector noise with variance ``sigma0**2 + k * signal`` (photon statistics), so
   compensation gives back the dye signal with realistic spreading error and negatives.
4. Events are in random class order over an acquisition of fixed length (Time channel with
   ``$TIMESTEP``); optional artefacts (clog, drift, margin events, low counts, tandem
   degradation) are injected and recorded.

Cohort model
------------
Subjects x visits of a preset schedule. Each patient has a baseline Treg % of CD4 and a peak
IL-2 fold change (log-normal, with a share of low responders); the effect rises over each
course of doses and washes out exponentially after it. IL-2 also raises CD25 and Ki-67 on Treg.
Optional healthy controls, a placebo arm, acquisition batches with gain shifts, and FMO /
single-stain control files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import read_yaml_mapping, write_bytes_atomic, write_tsv_atomic
from .errors import TregAnalysisError
from .fcs import write_fcs
from .sample import Spillover

if TYPE_CHECKING:  # pandas only where tables are written: a one-sample job does without it
    import pandas as pd

__all__ = [
    "CLASSES", "DEFAULTS", "PRESETS", "SampleSpec", "cohort_plan", "SimulatedEvents", "SimulationError", "class_fractions",
    "il2_effect", "load_config", "population_masks", "simulate_cohort", "simulate_events", "simulate_samples",
    "spillover_matrix", "write_cohort_tables",
]


class SimulationError(TregAnalysisError):
    """Invalid simulation settings."""


# Per-event class labels (uint8 codes = position in this tuple).
CLASSES: tuple[str, ...] = (
    "debris", "doublet", "dead", "monocyte", "granulocyte", "b_cell", "nk", "cd8_t", "dn_t",
    "treg", "cd25neg_foxp3pos", "activated_tcon", "resting_tcon",
)
_CD4_CLASSES = ("treg", "cd25neg_foxp3pos", "activated_tcon", "resting_tcon")
_T_CLASSES = ("cd8_t", "dn_t", *_CD4_CLASSES)
_LYMPHOCYTE_CLASSES = ("b_cell", "nk", *_T_CLASSES)

# Visit schedules: study days of the visits and of the IL-2 doses (day 0 = first dose, sampled
# before it). References in domain.md section 1 and 5.3.
PRESETS: dict[str, dict[str, list[int]]] = {
    # one 5-day course of daily low-dose IL-2
    "il2-course": {"days": [0, 5, 12, 33], "doses": [0, 1, 2, 3, 4]},
    # TRANSREG: 5-day induction, then a dose every 2 weeks
    "transreg": {"days": [0, 8, 15, 29, 85, 183], "doses": [0, 1, 2, 3, 4, *range(15, 183, 14)]},
    # Charite-style cycles: a 5-day course every 4 weeks, sampled at D0, D5 and D14 of each
    "charite": {"days": [c + d for c in (0, 28, 56, 84) for d in (0, 5, 14)],
                "doses": [c + d for c in (0, 28, 56, 84) for d in range(5)]},
    # He et al.: every other day for 2 weeks, 2 weeks off, 3 cycles; visits at weeks 0-12 and 24
    "he": {"days": [0, 14, 28, 42, 56, 70, 84, 168],
           "doses": [c + d for c in (0, 28, 56) for d in range(0, 14, 2)]},
}

DEFAULTS: dict[str, Any] = {
    "acquisition_seconds": 120.0,
    "timestep": 0.01,
    "range": 262144,
    # $PnS of each fluorescence channel; {marker} and {fluorochrome} are filled in
    "naming": "{marker} {fluorochrome}",
    # marker: fluorochrome, detector ($PnN), negative spread (sigma, linear units)
    "panel": {
        "CD3": ["APC-H7", "R780-A", 150.0],
        "CD4": ["PerCP-Cy5.5", "B695-A", 150.0],
        "CD8": ["PE-Cy7", "YG780-A", 150.0],
        "CD25": ["PE", "YG586-A", 200.0],
        "CD127": ["BV421", "V450-A", 150.0],
        "FOXP3": ["AF647", "R670-A", 300.0],
        "LIVE DEAD": ["Aqua", "V525-A", 200.0],
        "CD19": ["BV605", "V610-A", 150.0],
        "CD56": ["AF700", "R710-A", 150.0],
        "Ki-67": ["FITC", "B530-A", 200.0],
    },
    # spillover of each fluorochrome (row) into the others' detectors; unlisted pairs are 0
    "spillover": {
        "FITC": {"PE": 0.20, "PerCP-Cy5.5": 0.01},
        "PE": {"FITC": 0.015, "PE-Cy7": 0.03, "PerCP-Cy5.5": 0.10},
        "PerCP-Cy5.5": {"PE-Cy7": 0.10, "AF700": 0.01},
        "PE-Cy7": {"APC-H7": 0.02},
        "AF647": {"AF700": 0.15, "APC-H7": 0.05},
        "AF700": {"APC-H7": 0.10},
        "BV421": {"Aqua": 0.20},
        "Aqua": {"BV605": 0.03},
    },
    # what the file's $SPILLOVER says: "true", "perturbed" (entries x U(0.7, 1.3)) or "missing"
    "spillover_keyword": "true",
    "noise": {"electronic_sd": 20.0, "photon_k": 2.0},
    # class: FSC-A mean, sd; SSC-A mean, sd (linear units)
    "scatter": {
        "lymphocyte": [68000.0, 8000.0, 20000.0, 5000.0],
        "dead": [50000.0, 10000.0, 22000.0, 7000.0],
        "monocyte": [100000.0, 12000.0, 55000.0, 10000.0],
        "granulocyte": [120000.0, 15000.0, 150000.0, 30000.0],
        "debris": [15000.0, 8000.0, 8000.0, 5000.0],
    },
    "fsc_h_ratio": [0.85, 0.05],  # singlet FSC-H / FSC-A: mean, relative sd
    "doublet": {"fsc_a": 1.9, "fsc_h": 1.1},  # multiples of a singlet's FSC-A and FSC-H
    # fractions of all events; lymphocytes are the remainder
    "fractions": {"debris": 0.07, "doublet": 0.04, "dead": 0.08, "monocyte": 0.14, "granulocyte": 0.015},
    "lymphocytes": {"t": 0.65, "b_cell": 0.15, "nk": 0.20},  # of live lymphocytes
    "t_cells": {"cd4": 0.62, "cd8_t": 0.30, "dn_t": 0.08},  # of CD3
    # within CD4; treg is the mean of the subjects' baselines (sd across subjects)
    "cd4": {"patient": {"treg": 0.045, "treg_sd": 0.015, "cd25neg_foxp3pos": 0.025, "activated_tcon": 0.25},
            "healthy": {"treg": 0.06, "treg_sd": 0.012, "cd25neg_foxp3pos": 0.0075, "activated_tcon": 0.15}},
    # true dye signal per class: marker -> [median, sigma_log10] for a log-normal positive;
    # unlisted markers are negative N(0, panel sigma). Monocytes are CD4-dim.
    "intensities": {
        "dead": {"LIVE DEAD": [20000.0, 0.2]},
        "monocyte": {"CD4": [1500.0, 0.2]},
        "granulocyte": {},
        "b_cell": {"CD19": [8000.0, 0.2]},
        "nk": {"CD56": [1500.0, 0.25]},
        "cd8_t": {"CD3": [8000.0, 0.2], "CD8": [20000.0, 0.2], "CD127": [2500.0, 0.25]},
        "dn_t": {"CD3": [8000.0, 0.2]},
        "treg": {"CD3": [8000.0, 0.2], "CD4": [12000.0, 0.2], "CD25": [4000.0, 0.25],
                 "CD127": [400.0, 0.3], "FOXP3": [3000.0, 0.25]},
        "cd25neg_foxp3pos": {"CD3": [8000.0, 0.2], "CD4": [12000.0, 0.2], "CD127": [700.0, 0.3],
                             "FOXP3": [2000.0, 0.25]},
        "activated_tcon": {"CD3": [8000.0, 0.2], "CD4": [12000.0, 0.2], "CD25": [600.0, 0.25],
                           "CD127": [3000.0, 0.2]},
        "resting_tcon": {"CD3": [8000.0, 0.2], "CD4": [12000.0, 0.2], "CD127": [3000.0, 0.2]},
    },
    "treg_cd25_low_share": 0.10,  # Tregs that are CD25-dim (~90% are CD25-high)
    "cd56_bright_share": 0.08,  # of NK, CD56 about 10,000
    "ki67": {"positive": [4000.0, 0.2], "baseline_share": 0.10, "peak_treg_share": 0.35},
    "il2": {
        "fold_change_median": 2.0,  # peak Treg % FC of responders
        "fold_change_sigma": 0.46,  # natural-log sd (IQR about 1.5-2.8)
        "low_responder_share": 0.25,
        "low_responder_median": 1.1,
        "low_responder_sigma": 0.08,
        "half_life_days": 6.0,  # washout after a course
        "maintenance_weight": 0.5,  # share of the peak effect a single maintenance dose gives
        "cd25_treg_fc_median": 2.0,
        "cd25_treg_fc_sigma": 0.2,
        "cd25_tcon_fc": 1.1,
        "cd56_bright_fc": 1.75,
    },
    "lymphocytes_per_ul": [1200.0, 0.35],  # subject-level median, natural-log sd (SLE lymphopenia)
    "batch_gain_sd": 0.05,  # log sd of each batch's detector gain
    "artefacts": {"clog": 0.0, "drift": 0.0, "margin": 0.0, "low_events": 0.0, "tandem": 0.0},
    # probabilities used by `simulate --artefacts` (domain.md 5.3)
    "artefact_rates": {"clog": 0.10, "drift": 0.10, "margin": 0.20, "low_events": 0.05, "tandem": 0.05},
}


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The defaults, updated by a YAML file and a mapping (nested keys are merged).

    Raises
    ------
    SimulationError
        The file cannot be read or names a setting that does not exist.
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        _merge(config, read_yaml_mapping(path, "simulation config", SimulationError), str(path))
    if overrides:
        _merge(config, dict(overrides), "overrides")
    _check_shapes(config, str(path) if path is not None else "overrides")
    return config


def _check_shapes(config: Mapping[str, Any], where: str) -> None:
    """Sections stay mappings, panel entries stay [fluorochrome, detector, sigma]."""
    for key, default in DEFAULTS.items():
        if isinstance(default, dict) and not isinstance(config[key], dict):
            raise SimulationError(f"{where}: setting {key!r} must be a mapping, not {config[key]!r}")
    for marker, entry in config["panel"].items():
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
            raise SimulationError(f"{where}: panel entry {marker!r} must be [fluorochrome, detector, negative sd], "
                                  f"not {entry!r}")


def _merge(base: dict, new: Mapping, where: str, prefix: str = "") -> None:
    # free-form tables (panel, spillover, intensities) may gain keys; other sections may not
    open_tables = {"panel", "spillover", "intensities", "presets"}
    for key, value in new.items():
        name = f"{prefix}{key}"
        if key not in base and prefix.split(".")[0] not in open_tables:
            raise SimulationError(f"{where}: unknown setting {name!r}; known: {', '.join(sorted(base))}")
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, where, f"{name}.")
        else:
            base[key] = value


# -- one sample --------------------------------------------------------------------------------


@dataclass
class SampleSpec:
    """What one simulated sample should contain."""

    n_events: int
    cd4: dict[str, float]  # fractions of CD4 per CD4 class
    cd25_treg_fc: float = 1.0
    cd25_tcon_fc: float = 1.0
    ki67_treg_share: float = 0.10
    cd56_bright_fc: float = 1.0
    gains: np.ndarray | None = None  # per detector
    clog: bool = False
    drift: bool = False
    margin: bool = False
    tandem: bool = False
    absent_marker: str | None = None  # FMO: this marker's dye is not in the tube


def class_fractions(config: Mapping[str, Any], cd4: Mapping[str, float]) -> np.ndarray:
    """Expected fraction of all events per class (in :data:`CLASSES` order)."""
    share = config["fractions"]
    lymph = 1.0 - sum(share.values())
    if lymph <= 0:
        raise SimulationError("fractions of debris, doublets, dead, monocytes and granulocytes leave no lymphocytes")
    ly, t = config["lymphocytes"], config["t_cells"]
    cd4_share = lymph * ly["t"] * t["cd4"]
    resting = 1.0 - sum(cd4[c] for c in ("treg", "cd25neg_foxp3pos", "activated_tcon"))
    if resting < 0:
        raise SimulationError("CD4 class fractions add up to more than 1")
    parts = {
        **share,
        "b_cell": lymph * ly["b_cell"], "nk": lymph * ly["nk"],
        "cd8_t": lymph * ly["t"] * t["cd8_t"], "dn_t": lymph * ly["t"] * t["dn_t"],
        "treg": cd4_share * cd4["treg"], "cd25neg_foxp3pos": cd4_share * cd4["cd25neg_foxp3pos"],
        "activated_tcon": cd4_share * cd4["activated_tcon"], "resting_tcon": cd4_share * resting,
    }
    fractions = np.array([parts[c] for c in CLASSES], dtype=np.float64)
    return fractions / fractions.sum()


def _markers(config: Mapping[str, Any]) -> list[str]:
    return list(config["panel"])


def spillover_matrix(config: Mapping[str, Any]) -> np.ndarray:
    """The true dye -> detector matrix in panel order (1 on the diagonal)."""
    fluors = [v[0] for v in config["panel"].values()]
    matrix = np.eye(len(fluors))
    for source, targets in config["spillover"].items():
        for target, value in targets.items():
            if source in fluors and target in fluors:
                matrix[fluors.index(source), fluors.index(target)] = float(value)
    return matrix


@dataclass
class SimulatedEvents:
    """One simulated sample.

    Attributes
    ----------
    events : ndarray float32 (n, 3 + k + 1)
        FSC-A, FSC-H, SSC-A, the k panel detectors, Time (in ``$TIMESTEP`` ticks): what the
        FCS file holds.
    labels : ndarray uint8 (n,)
        Class code per event (index into :data:`CLASSES`), file order.
    dye : ndarray float32 (n, k)
        True dye signal per marker before spillover, batch gain and detector noise.
    record : dict
        What was injected (artefact windows, saturated events).
    """

    events: np.ndarray
    labels: np.ndarray
    dye: np.ndarray
    record: dict


def simulate_events(spec: SampleSpec, config: Mapping[str, Any], rng: np.random.Generator) -> SimulatedEvents:
    """Events of one sample as a cytometer records them (see the module's Notes)."""
    markers = _markers(config)
    k = len(markers)
    fractions = class_fractions(config, spec.cd4)
    counts = rng.multinomial(spec.n_events, fractions)
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.uint8), counts)
    rng.shuffle(labels)
    n = labels.size
    dye = np.empty((n, k), dtype=np.float64)
    # negatives everywhere first (autofluorescence and unspecific staining), then positives
    sigmas = np.array([float(v[2]) for v in config["panel"].values()])
    dye[:] = rng.standard_normal((n, k)) * sigmas
    col = {m: j for j, m in enumerate(markers)}
    for code, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == code)
        if idx.size == 0:
            continue
        for marker, (median, sigma_log10) in config["intensities"].get(name, {}).items():
            if marker not in col:
                continue
            median = float(median)
            if marker == "CD25" and name == "treg":
                median *= spec.cd25_treg_fc
            elif marker == "CD25" and name == "activated_tcon":
                median *= spec.cd25_tcon_fc
            dye[idx, col[marker]] = _lognormal(rng, median, sigma_log10, idx.size)
        if name == "treg" and "CD25" in col:
            # a minority of Tregs is CD25-dim: the CD25 continuum overlaps activated Tcon
            low = idx[rng.random(idx.size) < config["treg_cd25_low_share"]]
            dye[low, col["CD25"]] = _lognormal(rng, 800.0 * spec.cd25_treg_fc, 0.25, low.size)
        if name == "nk" and "CD56" in col:
            bright = idx[rng.random(idx.size) < config["cd56_bright_share"] * spec.cd56_bright_fc]
            dye[bright, col["CD56"]] = _lognormal(rng, 10000.0, 0.2, bright.size)
        if "Ki-67" in col and name in _LYMPHOCYTE_CLASSES:
            share = spec.ki67_treg_share if name == "treg" else config["ki67"]["baseline_share"]
            pos = idx[rng.random(idx.size) < share]
            median, sigma_log10 = config["ki67"]["positive"]
            dye[pos, col["Ki-67"]] = _lognormal(rng, median, sigma_log10, pos.size)
    own = [col[m] for m in config["intensities"].get("dead", {}) if m in col]
    _mixed_cells(dye, labels, rng, own)
    if spec.absent_marker is not None:
        # no antibody in the tube: the channel holds only the negative spread
        dye[:, col[spec.absent_marker]] = rng.standard_normal(n) * sigmas[col[spec.absent_marker]]
    matrix = spillover_matrix(config)
    if spec.tandem and "PE-Cy7" in _fluors(config) and "PE" in _fluors(config):
        fl = _fluors(config)
        matrix[fl.index("PE-Cy7"), fl.index("PE")] += 0.10  # degraded tandem: the donor shines
    detector = dye @ matrix
    if spec.gains is not None:
        detector *= spec.gains
    noise = config["noise"]
    detector += rng.standard_normal((n, k)) * np.sqrt(noise["electronic_sd"] ** 2 + noise["photon_k"] * np.maximum(detector, 0.0))
    scatter = _scatter(labels, config, rng)
    time, record = _acquisition_time(n, spec, config, rng)
    top = float(config["range"]) - 1.0
    if spec.drift:
        # the last 30% of the run loses up to 20% of signal on one detector
        j = int(rng.integers(k))
        start = 0.7 * float(config["acquisition_seconds"]) / float(config["timestep"])
        factor = 1.0 - 0.2 * np.clip((time - start) / (time.max() - start + 1e-9), 0.0, 1.0)
        detector[:, j] *= factor
        record["drift_detector"] = config["panel"][markers[j]][1]
    events = np.empty((n, 3 + k + 1), dtype=np.float32)
    events[:, :3] = scatter
    events[:, 3 : 3 + k] = detector
    events[:, -1] = time
    if spec.margin:
        share = rng.uniform(0.01, 0.03)
        hit = rng.random(n) < share
        events[hit, 0] = top  # saturated FSC-A (big clumps) and a saturated fluorescence channel
        events[hit, 3 + int(rng.integers(k))] = top
        record["margin_events"] = int(hit.sum())
    np.minimum(events[:, :-1], top, out=events[:, :-1])  # the ADC's ceiling
    np.maximum(events[:, :3], 0.0, out=events[:, :3])
    return SimulatedEvents(events, labels, dye.astype(np.float32), record)


def _mixed_cells(dye: np.ndarray, labels: np.ndarray, rng: np.random.Generator, dead_own: list[int]) -> None:
    """Doublets carry two lymphocytes' stains; dead cells keep dimmed lineage stains besides
    their own (``dead_own``: the viability dye's column).

    Without this, a pipeline that skipped the singlet or live gate would still look right.
    """
    lymph = np.flatnonzero(np.isin(labels, [CLASSES.index(c) for c in _LYMPHOCYTE_CLASSES]))
    if lymph.size == 0:
        return
    doublets = np.flatnonzero(labels == CLASSES.index("doublet"))
    pairs = rng.choice(lymph, (doublets.size, 2))
    dye[doublets] = dye[pairs[:, 0]] + dye[pairs[:, 1]]
    dead = np.flatnonzero(labels == CLASSES.index("dead"))
    own = dye[np.ix_(dead, dead_own)]
    dye[dead] = 0.6 * dye[rng.choice(lymph, dead.size)]
    dye[np.ix_(dead, dead_own)] = own


def _fluors(config: Mapping[str, Any]) -> list[str]:
    return [v[0] for v in config["panel"].values()]


def _lognormal(rng: np.random.Generator, median: float, sigma_log10: float, size: int) -> np.ndarray:
    return median * 10.0 ** (rng.standard_normal(size) * float(sigma_log10))


def _scatter(labels: np.ndarray, config: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """FSC-A, FSC-H, SSC-A per event; doublets are two lymphocytes or monocytes stuck together."""
    n = labels.size
    params = config["scatter"]
    group = np.full(n, "lymphocyte", dtype=object)
    for name, kind in (("debris", "debris"), ("dead", "dead"), ("monocyte", "monocyte"), ("granulocyte", "granulocyte")):
        group[labels == CLASSES.index(name)] = kind
    mean = np.empty((n, 2))
    sd = np.empty((n, 2))
    for kind, (fm, fs, sm, ss) in params.items():
        sel = group == kind
        mean[sel] = (fm, sm)
        sd[sel] = (fs, ss)
    fsc_ssc = mean + sd * rng.standard_normal((n, 2))
    debris = labels == CLASSES.index("debris")
    fsc_ssc[debris] = np.abs(fsc_ssc[debris])  # debris hugs the axes
    ratio_mean, ratio_sd = config["fsc_h_ratio"]
    fsc_h = fsc_ssc[:, 0] * ratio_mean * (1.0 + ratio_sd * rng.standard_normal(n))
    doublet = labels == CLASSES.index("doublet")
    fsc_ssc[doublet, 0] *= config["doublet"]["fsc_a"]
    fsc_h[doublet] *= config["doublet"]["fsc_h"]
    fsc_ssc[doublet, 1] *= 1.5
    return np.column_stack([fsc_ssc[:, 0], fsc_h, fsc_ssc[:, 1]])


def _acquisition_time(n: int, spec: SampleSpec, config: Mapping[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Time of each event in ``$TIMESTEP`` ticks, increasing; a clog thins then bursts."""
    seconds = float(config["acquisition_seconds"])
    t = np.sort(rng.uniform(0.0, seconds, n))
    record: dict[str, Any] = {}
    if spec.clog:
        # 5% of the run at a tenth of the rate; the held-back events come out in a burst after it
        start = rng.uniform(0.2, 0.7) * seconds
        stop = start + 0.05 * seconds
        inside = np.flatnonzero((t >= start) & (t < stop))
        held = inside[rng.random(inside.size) >= 0.1]
        t[held] = stop + rng.uniform(0.0, 0.005 * seconds, held.size)
        t.sort()
        record.update(clog_start_s=round(start, 3), clog_stop_s=round(stop, 3))
    return np.floor(t / float(config["timestep"])), record  # the instrument's clock ticks


# -- cohort ------------------------------------------------------------------------------------


def il2_effect(day: float, doses: list[int], half_life: float, maintenance_weight: float) -> float:
    """Share of a subject's peak IL-2 effect (on the log scale) present on a study day.

    Notes
    -----
    Doses are grouped into courses (doses at most 2 days apart). Over a course the effect rises
    linearly from 0 at its first dose to 1 the day after its last dose, then decays with the
    washout half-life. A course of 1-2 doses (maintenance) reaches ``maintenance_weight``. The
    effect on a day is the largest over the courses. Day 0 is sampled before the first dose.
    """
    effect = 0.0
    for course in _courses(doses):
        first, last = course[0], course[-1]
        weight = 1.0 if len(course) >= 3 else maintenance_weight
        peak = last + 1
        if day <= first:
            continue
        share = (day - first) / (peak - first) if day < peak else math.exp(-math.log(2) * (day - peak) / half_life)
        effect = max(effect, weight * share)
    return effect


def _courses(doses: list[int]) -> list[list[int]]:
    courses: list[list[int]] = []
    for day in sorted(set(doses)):
        if courses and day - courses[-1][-1] <= 2:
            courses[-1].append(day)
        else:
            courses.append([day])
    return courses


def simulate_cohort(
    out: str | os.PathLike,
    subjects: int = 6,
    visits: str = "il2-course",
    events: int = 100_000,
    seed: int = 1,
    config: Mapping[str, Any] | None = None,
    healthy: int = 0,
    placebo: int = 0,
    controls: bool = False,
) -> dict[str, pd.DataFrame]:
    """Simulate a cohort into ``out``: FCS files, sample sheet and truth.

    Parameters
    ----------
    out : path
        Output folder (created). Written: ``samples.tsv`` (the workflow's sample sheet),
        ``fcs/{sample}.fcs``, ``truth/{sample}.labels.npy`` (class code per event, file order),
        ``truth/classes.tsv``, ``truth.tsv`` (per sample), ``subjects.tsv`` (true effect per
        subject), ``batches.tsv`` (each batch's detector gains, which its files' ``$SPILLOVER``
        accounts for), and with ``controls`` ``controls/*.fcs`` plus ``controls.tsv``.
    subjects : int
        Patients; the last ``placebo`` of them are in the placebo arm.
    visits : str
        A key of :data:`PRESETS`.
    events : int
        Events per sample.
    seed : int
        The same seed gives the same bytes.
    config : mapping, optional
        Settings from :func:`load_config` (defaults when None).
    healthy : int
        Healthy controls, sampled once at day 0.
    controls : bool
        Write single-stain and FMO control files per batch.

    Returns
    -------
    dict of DataFrame
        ``samples``, ``truth``, ``subjects``, ``batches`` (and ``controls``), as written.

    See Also
    --------
    simulate_samples, write_cohort_tables : the same files in parts (one sample per workflow
        job, the tables in another), byte for byte.
    """
    design = _design(subjects, visits, events, seed, config, healthy, placebo)
    out = Path(out)
    truth_rows = [_simulate_planned(out, design, item) for item in design.plan]
    return _write_tables(out, design, truth_rows, controls=controls)


def simulate_samples(
    out: str | os.PathLike,
    sample_ids: Sequence[str],
    subjects: int = 6,
    visits: str = "il2-course",
    events: int = 100_000,
    seed: int = 1,
    config: Mapping[str, Any] | None = None,
    healthy: int = 0,
    placebo: int = 0,
) -> list[dict[str, Any]]:
    """Simulate only some samples of the cohort :func:`simulate_cohort` would write.

    Each sample has its own random stream (``SeedSequence(seed).spawn``), so its files are the
    same bytes as in the whole cohort with the same settings, whichever samples are simulated
    together; a workflow can simulate one sample per job.

    Parameters
    ----------
    out : path
        The cohort's folder. Written per sample: ``fcs/{sample}.fcs``,
        ``truth/{sample}.labels.npy`` and ``truth/{sample}.json`` (its row of ``truth.tsv`` and
        a digest of the settings, for :func:`write_cohort_tables`).
    sample_ids : sequence of str
        Sample ids of the cohort (``{subject}_D{day}``, see :func:`cohort_plan`).
    subjects, visits, events, seed, config, healthy, placebo
        The cohort's settings, as for :func:`simulate_cohort`.

    Returns
    -------
    list of dict
        The samples' rows of ``truth.tsv``.

    Raises
    ------
    SimulationError
        A sample id that is not in the cohort.
    """
    design = _design(subjects, visits, events, seed, config, healthy, placebo)
    by_id = {item["sample_id"]: item for item in design.plan}
    unknown = [s for s in sample_ids if s not in by_id]
    if unknown:
        raise SimulationError(f"not samples of this cohort: {', '.join(map(str, unknown))}; its samples are "
                              f"{', '.join(by_id)}")
    out = Path(out)
    rows = []
    for sample_id in dict.fromkeys(sample_ids):
        row = _simulate_planned(out, design, by_id[sample_id])
        record = {"settings": design.digest, "truth": row}
        write_bytes_atomic(out / "truth" / f"{sample_id}.json", json.dumps(record, indent=1).encode("utf-8"))
        rows.append(row)
    return rows


def write_cohort_tables(
    out: str | os.PathLike,
    subjects: int = 6,
    visits: str = "il2-course",
    events: int = 100_000,
    seed: int = 1,
    config: Mapping[str, Any] | None = None,
    healthy: int = 0,
    placebo: int = 0,
    controls: bool = False,
    truth: bool = True,
) -> dict[str, pd.DataFrame]:
    """The cohort's tables, as :func:`simulate_cohort` writes them, without simulating samples.

    With ``truth`` (the default) only ``truth.tsv``, from the ``truth/{sample}.json`` that
    :func:`simulate_samples` wrote for every sample of the cohort. With ``truth=False`` the
    tables known before any sample is simulated: ``samples.tsv``, ``subjects.tsv``,
    ``batches.tsv``, ``truth/classes.tsv`` and, with ``controls``, the control files and
    ``controls.tsv``. Both together with :func:`simulate_samples` give the bytes of
    :func:`simulate_cohort` with the same settings.

    Raises
    ------
    SimulationError
        A sample's ``truth/{sample}.json`` is missing, unreadable or was simulated with other settings.
    """
    design = _design(subjects, visits, events, seed, config, healthy, placebo)
    out = Path(out)
    if not truth:
        return _write_tables(out, design, None, controls=controls)
    rows = []
    for item in design.plan:
        path = out / "truth" / f"{item['sample_id']}.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SimulationError(f"{path}: cannot read the sample's truth ({exc}); simulate the sample first "
                                  "(treganalysis simulate --sample)") from None
        if not isinstance(record, dict) or record.get("settings") != design.digest:
            raise SimulationError(f"{path}: the sample was simulated with other settings than these; simulate it again")
        rows.append(record["truth"])
    return _write_tables(out, design, rows, sheet=False)


@dataclass
class _Design:
    """A cohort drawn up to the samples' own random streams: cheap, and the same for every part."""

    config: dict[str, Any]
    preset: dict[str, list[int]]
    events: int
    subject_rows: list[dict[str, Any]]
    plan: list[dict[str, Any]]  # per sample: ids, the subject's draws, its random stream
    gains: dict[str, np.ndarray]
    controls_seed: np.random.SeedSequence
    digest: str  # of every setting, so the parts of one cohort are not mixed with another's


def _design(subjects: int, visits: str, events: int, seed: int, config: Mapping[str, Any] | None,
            healthy: int, placebo: int) -> _Design:
    config = load_config(overrides=config) if config is not None else load_config()
    if visits not in PRESETS:
        raise SimulationError(f"unknown visit schedule {visits!r}; choose one of {', '.join(PRESETS)}")
    if subjects < 0 or healthy < 0 or not 0 <= placebo <= subjects or subjects + healthy == 0:
        raise SimulationError("need at least one subject; placebo subjects must be among the subjects")
    if events < 100:
        raise SimulationError(f"events per sample must be at least 100, not {events}")
    preset = PRESETS[visits]
    il2 = config["il2"]
    root = np.random.SeedSequence(seed)
    subject_rng = np.random.default_rng(root.spawn(1)[0])
    markers = _markers(config)
    batches = {day: f"B{i + 1}" for i, day in enumerate(preset["days"])}
    batch_rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    gains = {b: np.exp(batch_rng.normal(0.0, config["batch_gain_sd"], len(markers))) for b in batches.values()}

    subject_rows, plan = [], []
    for i in range(subjects + healthy):
        is_healthy = i >= subjects
        arm = "healthy" if is_healthy else ("placebo" if i >= subjects - placebo else "il2")
        name = f"HC{i - subjects + 1:02d}" if is_healthy else f"P{i + 1:02d}"
        cd4 = dict(config["cd4"]["healthy" if is_healthy else "patient"])
        baseline = float(np.clip(subject_rng.normal(cd4["treg"], cd4["treg_sd"]), 0.005, 0.25))
        # every subject makes the same draws, so changing the arms does not reshuffle the others
        low = bool(subject_rng.random() < il2["low_responder_share"])
        median, sigma = ((il2["low_responder_median"], il2["low_responder_sigma"]) if low
                         else (il2["fold_change_median"], il2["fold_change_sigma"]))
        peak = float(median * math.exp(subject_rng.normal(0.0, sigma)))
        peak = peak if arm == "il2" else 1.0
        cd25_fc = float(il2["cd25_treg_fc_median"] * math.exp(subject_rng.normal(0.0, il2["cd25_treg_fc_sigma"])))
        cd25_fc = cd25_fc if arm == "il2" else 1.0
        lymph_median, lymph_sigma = config["lymphocytes_per_ul"]
        lymph = float(lymph_median * math.exp(subject_rng.normal(0.0, lymph_sigma)))
        subject_rows.append({"subject": name, "arm": arm, "role": "healthy" if is_healthy else "patient",
                             "baseline_treg_pct_cd4": 100 * baseline, "peak_fold_change": peak,
                             "low_responder": low if arm == "il2" else False,
                             "cd25_treg_peak_fold_change": cd25_fc, "lymphocytes_per_ul": round(lymph, 1)})
        days = [0] if is_healthy else preset["days"]
        for day in days:
            plan.append({"sample_id": f"{name}_D{day}", "subject": name, "arm": arm, "day": day, "batch": batches[day],
                         "baseline": baseline, "peak": peak, "cd25_fc": cd25_fc, "lymph": lymph, "cd4": cd4})
    sample_seeds = root.spawn(len(plan) + 1)
    for item, sample_seed in zip(plan, sample_seeds[1:]):
        item["seed"] = sample_seed
    settings = {"subjects": subjects, "visits": visits, "events": events, "seed": seed, "healthy": healthy,
                "placebo": placebo, "config": config}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=repr).encode("utf-8")).hexdigest()
    return _Design(config, preset, events, subject_rows, plan, gains, sample_seeds[0], digest)


def _simulate_planned(out: Path, design: _Design, item: Mapping[str, Any]) -> dict[str, Any]:
    """Simulate one planned sample: write its FCS file and labels; returns its truth row."""
    config, preset, il2 = design.config, design.preset, design.config["il2"]
    rates = config["artefacts"]
    for folder in ("fcs", "truth"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    sample_id, name, arm, day = item["sample_id"], item["subject"], item["arm"], item["day"]
    baseline, peak, cd25_fc = item["baseline"], item["peak"], item["cd25_fc"]
    rng = np.random.default_rng(item["seed"])
    share = il2_effect(day, preset["doses"], il2["half_life_days"], il2["maintenance_weight"]) if arm == "il2" else 0.0
    treg = min(baseline * peak ** share, 0.6)
    fold = treg / baseline  # as realised after the cap
    flags = {a: bool(rng.random() < float(rates[a])) for a in ("clog", "drift", "margin", "low_events", "tandem")}
    n = int(design.events * 0.15) if flags["low_events"] else design.events
    spec = SampleSpec(
        n_events=n, cd4={**item["cd4"], "treg": treg},
        cd25_treg_fc=cd25_fc ** share, cd25_tcon_fc=il2["cd25_tcon_fc"] ** share,
        ki67_treg_share=config["ki67"]["baseline_share"] + share * (config["ki67"]["peak_treg_share"] - config["ki67"]["baseline_share"]),
        cd56_bright_fc=il2["cd56_bright_fc"] ** share, gains=design.gains[item["batch"]],
        clog=flags["clog"], drift=flags["drift"], margin=flags["margin"], tandem=flags["tandem"],
    )
    sim = simulate_events(spec, config, rng)
    labels, record = sim.labels, sim.record
    _write_sample(out / "fcs" / f"{sample_id}.fcs", sim.events, config, rng, sample_id, day, gains=spec.gains)
    write_bytes_atomic(out / "truth" / f"{sample_id}.labels.npy", _npy_bytes(labels))
    row = _truth_row(sample_id, name, day, arm, labels, treg, fold, spec, flags, record)
    return {**row, "batch": item["batch"]}


def _sheet_row(item: Mapping[str, Any]) -> dict[str, Any]:
    arm = item["arm"]
    return {"sample_id": item["sample_id"], "subject": item["subject"], "timepoint": f"D{item['day']}",
            "day": item["day"], "fcs": f"fcs/{item['sample_id']}.fcs", "batch": item["batch"], "arm": arm,
            "lymphocytes_per_ul": round(item["lymph"], 1), "role": "healthy" if arm == "healthy" else "patient"}


def _write_tables(out: Path, design: _Design, truth_rows: list[dict[str, Any]] | None, sheet: bool = True,
                  controls: bool = False) -> dict[str, pd.DataFrame]:
    """Write the cohort's tables: ``truth.tsv`` from ``truth_rows`` (when given) and, with
    ``sheet``, those known before the samples are simulated (with ``controls``, the controls)."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    config, markers = design.config, _markers(design.config)
    tables: dict[str, pd.DataFrame] = {}
    if sheet:
        tables["samples"] = pd.DataFrame([_sheet_row(item) for item in design.plan])
    if truth_rows is not None:
        tables["truth"] = pd.DataFrame(truth_rows).round(6)
    if sheet:
        tables["subjects"] = pd.DataFrame(design.subject_rows).round(6)
        if controls:
            tables["controls"] = _write_controls(out, config, design.gains, np.random.default_rng(design.controls_seed))
        write_tsv_atomic(out / "samples.tsv", tables["samples"])
    if truth_rows is not None:
        write_tsv_atomic(out / "truth.tsv", tables["truth"])
    if sheet:
        write_tsv_atomic(out / "subjects.tsv", tables["subjects"])
        tables["batches"] = pd.DataFrame([{"batch": b, **{f"gain_{config['panel'][m][1]}": float(g) for m, g in zip(markers, gain)}}
                                          for b, gain in design.gains.items()])
        write_tsv_atomic(out / "batches.tsv", tables["batches"])
        (out / "truth").mkdir(parents=True, exist_ok=True)
        write_tsv_atomic(out / "truth" / "classes.tsv", pd.DataFrame({"code": range(len(CLASSES)), "class": CLASSES}))
    return tables


def cohort_plan(subjects: int = 6, visits: str = "il2-course", healthy: int = 0,
                as_frame: bool = True) -> pd.DataFrame | list[dict[str, Any]]:
    """Sample id, subject, day and batch of each sample :func:`simulate_cohort` writes, known
    before it runs (the workflow plans its jobs from it).

    Parameters
    ----------
    subjects, visits, healthy
        The cohort's settings, as for :func:`simulate_cohort`.
    as_frame : bool
        A pandas DataFrame (default), or a list of one dict per sample: the workflow plans the
        demo with the list, so Snakemake's process does without pandas' import (0.3-0.4 s of
        every ``snakemake`` command).
    """
    if visits not in PRESETS:
        raise SimulationError(f"unknown visit schedule {visits!r}; choose one of {', '.join(PRESETS)}")
    days = PRESETS[visits]["days"]
    rows = [(f"P{i + 1:02d}", d) for i in range(subjects) for d in days] + [(f"HC{i + 1:02d}", 0) for i in range(healthy)]
    plan = [{"sample_id": f"{s}_D{d}", "subject": s, "day": d, "batch": f"B{days.index(d) + 1}"} for s, d in rows]
    if not as_frame:
        return plan
    import pandas as pd

    return pd.DataFrame(plan)


def population_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """True membership of the gated populations (design.md names) from per-event class labels."""
    def among(names) -> np.ndarray:
        return np.isin(labels, [CLASSES.index(c) for c in names])

    return {
        "cells": labels != CLASSES.index("debris"),
        "singlets": ~among(("debris", "doublet")),
        "lymphocytes": among(("dead", *_LYMPHOCYTE_CLASSES)),
        "live": among(_LYMPHOCYTE_CLASSES),
        "cd3": among(_T_CLASSES),
        "cd4": among(_CD4_CLASSES),
        "treg": among(("treg",)),
        "cd25neg_foxp3pos": among(("cd25neg_foxp3pos",)),
        "tcon": among(("cd25neg_foxp3pos", "activated_tcon", "resting_tcon")),
    }


def _truth_row(sample_id, subject, day, arm, labels, treg, fold, spec, flags, record) -> dict[str, Any]:
    counts = np.bincount(labels, minlength=len(CLASSES))
    n_cd4 = sum(int(counts[CLASSES.index(c)]) for c in _CD4_CLASSES)
    row: dict[str, Any] = {"sample_id": sample_id, "subject": subject, "day": day, "arm": arm,
                           "n_events": int(labels.size),
                           "treg_pct_cd4_expected": 100 * treg,
                           "treg_pct_cd4": 100 * counts[CLASSES.index("treg")] / n_cd4 if n_cd4 else float("nan"),
                           "treg_fold_change_expected": fold,
                           "cd25_treg_fold_change": spec.cd25_treg_fc}
    row.update({f"n_{c}": int(counts[i]) for i, c in enumerate(CLASSES)})
    row.update({a: flags[a] for a in flags})
    row.update({"clog_start_s": record.get("clog_start_s"), "clog_stop_s": record.get("clog_stop_s"),
                "drift_detector": record.get("drift_detector"), "margin_events": record.get("margin_events", 0)})
    return row


def _write_sample(path: Path, events: np.ndarray, config: Mapping[str, Any], rng: np.random.Generator,
                  sample_id: str, day: int, absent: str | None = None, gains: np.ndarray | None = None) -> None:
    markers = _markers(config)
    panel = config["panel"]
    detectors = [panel[m][1] for m in markers]
    pns = [config["naming"].format(marker=m, fluorochrome=panel[m][0]) for m in markers]
    if absent is not None:
        pns[markers.index(absent)] = f"FMO {absent}"
    channels = ["FSC-A", "FSC-H", "SSC-A", *detectors, "Time"]
    markers_row = ["", "", "", *pns, ""]
    ranges = [float(config["range"])] * (len(channels) - 1) + [float(config["acquisition_seconds"]) / float(config["timestep"])]
    mode = config["spillover_keyword"]
    spill = None
    if mode != "missing":
        matrix = spillover_matrix(config)
        if gains is not None:
            # detector gains change the matrix that fits the data: diag(1/g) S diag(g)
            matrix = matrix * gains[None, :] / gains[:, None]
        if mode == "perturbed":
            off = ~np.eye(len(markers), dtype=bool)
            matrix[off] *= rng.uniform(0.7, 1.3, off.sum())
        elif mode != "true":
            raise SimulationError(f"spillover_keyword must be 'true', 'perturbed' or 'missing', not {mode!r}")
        spill = Spillover(matrix, tuple(detectors), "simulated")
    # a fixed synthetic acquisition date per study day keeps the bytes deterministic
    date = (np.datetime64("2026-01-05") + np.timedelta64(int(day), "D")).astype(object)
    keywords = {"$CYT": "treganalysis simulator", "$TIMESTEP": f"{config['timestep']}", "$FIL": path.name,
                "$SRC": sample_id, "$DATE": date.strftime("%d-%b-%Y").upper(), "$BTIM": "09:00:00",
                "$ETIM": "09:02:00"}
    write_fcs(path, events, channels, markers_row, ranges=ranges, spillover=spill, keywords=keywords)


def _write_controls(out: Path, config: Mapping[str, Any], gains: Mapping[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    """Per batch: single-stain controls (one dye each, half the events bright) and FMO tubes."""
    import pandas as pd

    folder = out / "controls"
    folder.mkdir(parents=True, exist_ok=True)
    markers = _markers(config)
    k = len(markers)
    matrix = spillover_matrix(config)
    noise = config["noise"]
    rows = []
    for batch, gain in gains.items():
        for j, marker in enumerate(markers):
            n = 5000
            dye = rng.standard_normal((n, k)) * 20.0
            bright = rng.random(n) < 0.5
            dye[bright, j] = _lognormal(rng, 20000.0, 0.1, int(bright.sum()))
            det = dye @ matrix * gain
            det += rng.standard_normal((n, k)) * np.sqrt(noise["electronic_sd"] ** 2 + noise["photon_k"] * np.maximum(det, 0))
            scatter = np.column_stack([rng.normal(60000, 3000, n), rng.normal(52000, 2500, n), rng.normal(15000, 1500, n)])
            time = np.sort(rng.uniform(0, 30.0, n)) / float(config["timestep"])
            ev = np.column_stack([scatter, det, time]).astype(np.float32)
            name = f"{batch}_single_{config['panel'][marker][0]}"
            _write_sample(folder / f"{name}.fcs", ev, config, rng, name, 0, gains=gain)
            rows.append({"file": f"controls/{name}.fcs", "batch": batch, "kind": "single_stain", "marker": marker,
                         "fluorochrome": config["panel"][marker][0]})
        for marker in ("CD25", "FOXP3", "CD127"):
            if marker not in markers:
                continue
            base = config["cd4"]["patient"]
            spec = SampleSpec(n_events=20000, cd4={**base}, gains=gain, absent_marker=marker)
            name = f"{batch}_FMO_{marker}"
            _write_sample(folder / f"{name}.fcs", simulate_events(spec, config, rng).events, config, rng, name, 0,
                          absent=marker, gains=gain)
            rows.append({"file": f"controls/{name}.fcs", "batch": batch, "kind": "fmo", "marker": marker,
                         "fluorochrome": config["panel"][marker][0]})
    table = pd.DataFrame(rows)
    write_tsv_atomic(out / "controls.tsv", table)
    return table


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
