#!/usr/bin/env python
"""Side-by-side timing of treganalysis' foundation against FlowIO / FlowKit / FlowUtils.

Every operation runs on the SAME file and the SAME arrays in every library, and the outputs are
compared (max |difference| printed) so that the timings are of the same work:

1. read an FCS file (little-endian and a big-endian copy, as BD instruments write):
   ``treganalysis.read_fcs`` vs ``flowio.FlowData(path).as_array()`` vs ``flowkit.Sample(path)``
   + ``get_events(source="raw")``;
2. compensate with the file's ``$SPILLOVER``: ``treganalysis.compensate`` vs FlowKit
   ``Sample.apply_compensation(spill_text)`` + ``get_events(source="comp")`` vs
   ``flowutils.compensate.compensate(events64, spill_matrix, fluoro_indices)``;
3. Logicle (T=262144, W=0.5, M=4.5, A=0) of one compensated channel (float32 and float64 input)
   vs ``flowutils.transforms.logicle``; and of all fluorescence channels at once vs FlowKit
   ``Sample.apply_transform(LogicleTransform(...))`` and ``flowutils.transforms.logicle``;
4. the three together (read + compensate + Logicle), as a pipeline would run them.

Timing: ``time.perf_counter``, one warm-up run (its output is the one checked for agreement),
then the best (minimum) of ``--repeats`` runs; the libraries take turns within each repeat so
that a noisy neighbour on a shared machine hits all of them alike. Peak memory allocated during
one call (result included) is measured afterwards with ``tracemalloc``. Speed-up = theirs / ours.

This is a measurement tool, not a test: nothing about timings is asserted. The environment is
left as it is (thread counts of the BLAS library included); what is set is printed.

Usage::

    python benchmarks/bench_foundation.py                 # 1,000,000 synthetic events, ~1-2 min
    python benchmarks/bench_foundation.py --events 200000 --repeats 3
    python benchmarks/bench_foundation.py --file my_sample.fcs

Results: a table on stdout and ``benchmarks/output/foundation.json`` (``--json`` to change).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

from _measure import peak_mb, timed  # benchmarks/, the script's folder

import numpy as np

import treganalysis as ta
from treganalysis.fcs import SPILLOVER_KEYWORDS, assemble_fcs, read_text, write_fcs

try:  # the references are optional: a missing one is reported, not fatal
    import flowio
except ImportError:  # pragma: no cover
    flowio = None
try:
    import flowkit as fk
except ImportError:  # pragma: no cover
    fk = None
try:
    import flowutils
    import flowutils.compensate
    import flowutils.transforms
except ImportError:  # pragma: no cover
    flowutils = None

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "output" / "foundation.json"

# Logicle parameters (GatingML 2.0 defaults for 18-bit BD data)
LOGICLE_W, LOGICLE_M, LOGICLE_A = 0.5, 4.5, 0.0

# -- synthetic data --------------------------------------------------------------------------------

SCATTER = ["FSC-A", "FSC-H", "SSC-A"]
FLUORO = ["FITC-A", "PE-A", "PerCP-Cy5-5-A", "PE-Cy7-A", "APC-A", "APC-H7-A", "BV421-A", "BV510-A"]
MARKERS = ["CD45RA", "CD25", "CD4", "CD127", "FOXP3", "CD3", "Ki-67", "Viability"]
# Rows: the dye's own detector; columns: the detectors it spills into (BD Fortessa-like values).
SPILL = np.array([
    #  FITC    PE    PerCP  PE-Cy7  APC   APC-H7 BV421  BV510
    [1.000, 0.220, 0.040, 0.005, 0.000, 0.000, 0.000, 0.010],  # FITC
    [0.010, 1.000, 0.180, 0.030, 0.002, 0.001, 0.000, 0.002],  # PE
    [0.000, 0.010, 1.000, 0.120, 0.050, 0.030, 0.000, 0.000],  # PerCP-Cy5.5
    [0.000, 0.020, 0.030, 1.000, 0.000, 0.080, 0.000, 0.000],  # PE-Cy7
    [0.000, 0.000, 0.020, 0.005, 1.000, 0.140, 0.000, 0.000],  # APC
    [0.000, 0.000, 0.002, 0.030, 0.040, 1.000, 0.000, 0.000],  # APC-H7
    [0.002, 0.000, 0.000, 0.000, 0.000, 0.000, 1.000, 0.250],  # BV421
    [0.050, 0.020, 0.005, 0.000, 0.000, 0.000, 0.060, 1.000],  # BV510
])
TOP = 262143.0  # 18-bit BD scale


def synthetic_events(n: int, seed: int = 20261127) -> np.ndarray:
    """PBMC-like events of a Treg panel: scatter, 8 spilled fluorescence channels, Time.

    Lymphocytes / monocytes / debris, 3 % doublets, T cells, CD4, Treg (CD25hi CD127lo FOXP3+),
    dead cells; true dye amounts are spilled through ``SPILL`` and electronic noise is added,
    so dim events are negative, as in real BD data.
    """
    rng = np.random.default_rng(seed)
    pop = rng.choice(3, size=n, p=[0.74, 0.18, 0.08])  # lymphocytes, monocytes, debris
    lym, mono, debris = pop == 0, pop == 1, pop == 2

    def lognormal(median: float, sigma: float, size: int) -> np.ndarray:
        return rng.lognormal(np.log(median), sigma, size)

    fsc_a = np.where(lym, rng.normal(60000, 7000, n), rng.normal(95000, 11000, n))
    fsc_a[debris] = lognormal(15000, 0.6, debris.sum())
    ssc_a = np.where(lym, lognormal(18000, 0.25, n), lognormal(45000, 0.25, n))
    ssc_a[debris] = lognormal(9000, 0.7, debris.sum())
    fsc_h = fsc_a * rng.normal(0.82, 0.03, n)
    doublet = rng.random(n) < 0.03
    fsc_a[doublet] *= 1.8
    fsc_h[doublet] *= 1.1

    dye = np.empty((n, 8))
    autofluorescence = np.array([150.0, 80, 60, 40, 30, 40, 100, 120])
    for k in range(8):  # autofluorescence, three times higher on monocytes
        dye[:, k] = lognormal(autofluorescence[k], 0.5, n) * np.where(mono, 3.0, 1.0)
    t_cell = lym & (rng.random(n) < 0.72)
    cd4 = t_cell & (rng.random(n) < 0.62)
    treg = cd4 & (rng.random(n) < 0.07)
    conv_cd25 = cd4 & ~treg & (rng.random(n) < 0.35)

    def add(k: int, mask: np.ndarray, median: float, sigma: float = 0.45) -> None:
        dye[mask, k] += lognormal(median, sigma, int(mask.sum()))

    add(5, t_cell, 8000)                                    # CD3 APC-H7
    add(2, cd4, 5000)                                       # CD4 PerCP-Cy5.5
    add(2, mono, 800)                                       # CD4 dim on monocytes
    add(4, treg, 6000)                                      # FOXP3 APC
    add(1, treg, 9000)                                      # CD25 high on Treg
    add(1, conv_cd25, 1500, 0.6)                            # CD25 intermediate
    add(3, t_cell & ~treg & (rng.random(n) < 0.85), 3000)   # CD127 PE-Cy7, low on Treg
    add(0, lym & (rng.random(n) < 0.5), 6000)               # CD45RA FITC
    add(6, lym & (rng.random(n) < np.where(treg, 0.2, 0.06)), 4000)  # Ki-67 BV421
    add(7, (rng.random(n) < 0.05) | (debris & (rng.random(n) < 0.5)), 20000)  # dead cells
    noise_sd = np.array([40.0, 60, 70, 60, 50, 60, 45, 50])
    fluor = dye @ SPILL + rng.normal(0.0, 1.0, (n, 8)) * noise_sd

    ticks = np.floor(np.sort(rng.uniform(0, n / 2000 / 0.01, n)))  # 2000 events/s, $TIMESTEP 0.01
    events = np.column_stack([fsc_a, fsc_h, ssc_a, fluor, ticks])
    events[:, :3] = np.clip(events[:, :3], 0.0, TOP)
    events[:, 3:11] = np.minimum(events[:, 3:11], TOP)
    return events.astype(np.float32)


def write_synthetic(folder: Path, n: int) -> tuple[Path, Path]:
    """The little-endian FCS 3.1 file and its big-endian twin (same TEXT, same values)."""
    events = synthetic_events(n)
    channels = SCATTER + FLUORO + ["Time"]
    markers = [""] * 3 + MARKERS + [""]
    le = write_fcs(folder / "synthetic_le.fcs", events, channels, markers,
                   spillover=ta.Spillover(SPILL, FLUORO, "sim"),
                   keywords={"$TIMESTEP": "0.01", "$CYT": "synthetic (treganalysis benchmark)"})
    text = read_text(le)
    for key in ("$BEGINDATA", "$ENDDATA", "$BEGINANALYSIS", "$ENDANALYSIS", "$BEGINSTEXT", "$ENDSTEXT"):
        text.pop(key, None)  # assemble_fcs fills them in for the new layout
    text["$BYTEORD"] = "4,3,2,1"
    be = folder / "synthetic_be.fcs"
    be.write_bytes(assemble_fcs(text, events.astype(">f4").tobytes()))
    return le, be


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Impl:
    label: str                      # shown in the table
    fn: Callable[[], np.ndarray]    # one run; returns the array checked for agreement
    ours: bool = False


@dataclass
class Operation:
    name: str
    impls: list[Impl]
    # (ours label, reference label): a row of the table each
    pairs: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""


def _agreement(ours: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return {"shape_ours": list(ours.shape), "shape_ref": list(ref.shape), "max_abs_diff": None}
    diff = np.abs(ours - ref)
    both_nan = np.isnan(ours) & np.isnan(ref)
    diff[both_nan] = 0.0
    rel = diff / np.maximum(np.abs(ref), 1.0)
    return {"max_abs_diff": float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan"),
            "max_rel_diff": float(np.nanmax(rel)) if np.isfinite(rel).any() else float("nan"),
            "nan_mismatch": int((np.isnan(ours) != np.isnan(ref)).sum())}


def measure(op: Operation, repeats: int, memory: bool) -> dict[str, Any]:
    print(f"  {op.name} ...", flush=True)
    record: dict[str, Any] = {"operation": op.name, "note": op.note, "implementations": {}, "comparisons": []}
    outputs: dict[str, np.ndarray] = {}
    live: list[Impl] = []
    for impl in op.impls:  # warm-up; its output is the one compared
        entry: dict[str, Any] = {"ours": impl.ours}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                entry["warmup_s"], outputs[impl.label] = timed(impl.fn)
                live.append(impl)
            except Exception as exc:  # a reference that cannot do it is reported, not fatal
                entry["error"] = f"{type(exc).__name__}: {exc}"
                print(f"    {impl.label}: FAILED ({entry['error']})")
        if caught:
            entry["warnings"] = sorted({str(w.message) for w in caught})
        entry["times_s"] = []
        record["implementations"][impl.label] = entry
    for ours_label, ref_label in op.pairs:
        if ours_label in outputs and ref_label in outputs:
            record["comparisons"].append(
                {"ours": ours_label, "reference": ref_label, **_agreement(outputs[ours_label], outputs[ref_label])}
            )
    outputs.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):  # round robin: each repeat runs every library once
            for impl in live:
                seconds, out = timed(impl.fn)
                del out
                record["implementations"][impl.label]["times_s"].append(seconds)
        for impl in live:
            entry = record["implementations"][impl.label]
            entry["best_s"] = min(entry["times_s"])
            entry["median_s"] = statistics.median(entry["times_s"])
            if memory:
                entry["peak_mb"] = peak_mb(impl.fn)
    for comp in record["comparisons"]:
        ours = record["implementations"][comp["ours"]]
        ref = record["implementations"][comp["reference"]]
        comp["ours_best_s"], comp["ref_best_s"] = ours.get("best_s"), ref.get("best_s")
        if comp["ours_best_s"] and comp["ref_best_s"]:
            comp["speedup_best"] = comp["ref_best_s"] / comp["ours_best_s"]
            comp["speedup_median"] = ref["median_s"] / ours["median_s"]
        if "peak_mb" in ours and "peak_mb" in ref:
            comp["ours_peak_mb"], comp["ref_peak_mb"] = ours["peak_mb"], ref["peak_mb"]
    return record


# -- the operations --------------------------------------------------------------------------------


def _spill_text(text: dict[str, str]) -> str | None:
    return next((text[k] for k in SPILLOVER_KEYWORDS if text.get(k, "").strip()), None)


def build_operations(le_path: Path, be_path: Path | None, logicle_t: float | None) -> tuple[list[Operation], dict]:
    """The operations, on one file (and its big-endian twin); inputs are prepared here, untimed."""
    info: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = ta.read_fcs(le_path)
    text = read_text(le_path)
    spill_text = _spill_text(text)
    info.update(events=sample.n_events, channels=sample.n_channels, byteorder=text.get("$BYTEORD"),
                datatype=text.get("$DATATYPE"), version=sample.version)
    ops: list[Operation] = []

    # FlowKit's view of the file, used as the float64 input of the references. FlowIO refuses
    # files with an off-by-one $ENDDATA unless told to ignore it; then every FlowIO/FlowKit call
    # is given that option (treganalysis accepts such files as they are).
    fio_kw: dict[str, Any] = {}
    fk_sample = None
    if fk is not None:
        for kw in ({}, {"ignore_offset_error": True}):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fk_sample = fk.Sample(str(le_path), **kw)
                fio_kw = kw
                break
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if "ignore_offset_error" not in str(exc):
                    break
        if fk_sample is None:
            print(f"  FlowKit cannot read the file ({problem}); FlowKit/FlowIO are timed where they can be")
            info["flowkit_error"] = problem
    if fio_kw:
        print(f"  FlowIO/FlowKit need {fio_kw} for this file; given to every call")
    info["flowio_flowkit_options"] = fio_kw

    # 1. read
    orders = {"1,2,3,4": "little-endian", "4,3,2,1": "big-endian"}
    reads = [(le_path, f"read ({orders.get(info['byteorder'], '$BYTEORD ' + str(info['byteorder']))})")]
    if be_path is not None:
        reads.append((be_path, "read (big-endian)"))
    for path, what in reads:
        impls = [Impl("treganalysis", lambda p=path: ta.read_fcs(p).events, ours=True)]
        if flowio is not None:
            impls.append(Impl("FlowIO", lambda p=path: flowio.FlowData(str(p), **fio_kw).as_array()))
        if fk is not None:
            impls.append(Impl("FlowKit", lambda p=path: fk.Sample(str(p), **fio_kw).get_events(source="raw")))
        ops.append(Operation(what, impls, [("treganalysis", i.label) for i in impls[1:]],
                             "float32 (ours) vs float64 (FlowIO/FlowKit) events; file in the OS cache"))

    # 2. compensate
    events64 = fk_sample.get_events(source="raw") if fk_sample is not None else sample.events.astype(np.float64)
    comp = None
    if sample.spillover is not None:
        comp = ta.compensate(sample)
        impls = [Impl("treganalysis", lambda: ta.compensate(sample).events, ours=True)]
        if fk_sample is not None and spill_text is not None:
            def fk_compensate() -> np.ndarray:
                fk_sample.apply_compensation(spill_text)
                return fk_sample.get_events(source="comp")
            impls.append(Impl("FlowKit", fk_compensate))
        if flowutils is not None and spill_text is not None:
            # flowutils wants the bare k x k matrix (no header row) and the event columns of its
            # rows/columns, in matrix order; parse it with flowutils' own parser, untimed
            fu_matrix, fu_names = flowutils.compensate.get_spill(spill_text)
            channel_of = {c: i for i, c in enumerate(sample.channels)}
            comp_cols = [channel_of[c] for c in comp.compensation["channels"]]
            fu_cols = [channel_of.get(name, comp_cols[j]) for j, name in enumerate(fu_names)]
            impls.append(Impl("FlowUtils",
                              lambda: flowutils.compensate.compensate(events64, fu_matrix, fu_cols)))
        ops.append(Operation(f"compensate ({len(sample.spillover.channels)} ch)", impls,
                             [("treganalysis", i.label) for i in impls[1:]],
                             "ours: float32 in/out, float64 math; FlowKit/FlowUtils: float64"))
        info["spillover_channels"] = list(sample.spillover.channels)
    else:
        print("  (the file has no spillover keyword: compensation is not benchmarked)")

    comp32 = comp.events if comp is not None else sample.events
    if fk_sample is not None and comp is not None and spill_text is not None:
        fk_sample.apply_compensation(spill_text)
        comp64 = fk_sample.get_events(source="comp")
    else:
        comp64 = comp32.astype(np.float64)

    # fluorescence channels as FlowKit/FlowIO see them (what Sample.apply_transform transforms)
    if fk_sample is not None:
        fl_idx = list(fk_sample.fluoro_indices)
    else:
        fl_idx = [sample.channels.index(c) for c in sample.fluorescence_channels]
    fl_names = [sample.channels[i] for i in fl_idx]
    if logicle_t is None:
        logicle_t = float(max((sample.ranges[i] for i in fl_idx), default=262144.0) or 262144.0)
    T, W, M, A = logicle_t, LOGICLE_W, LOGICLE_M, LOGICLE_A
    info["logicle"] = {"T": T, "W": W, "M": M, "A": A}
    info["fluorescence_channels"] = fl_names

    # 3a. Logicle of one channel
    one = (comp.compensation["channels"][0] if comp is not None else fl_names[0])
    j = sample.channels.index(one)
    x32 = np.ascontiguousarray(comp32[:, j])
    x64 = x32.astype(np.float64)  # the same values as float64
    x64_2d = x64.reshape(-1, 1)
    impls = [Impl("treganalysis f32", lambda: ta.logicle(x32, T, W, M, A), ours=True),
             Impl("treganalysis f64", lambda: ta.logicle(x64, T, W, M, A), ours=True)]
    if flowutils is not None:
        impls.append(Impl("FlowUtils", lambda: flowutils.transforms.logicle(x64_2d, [0], t=T, m=M, w=W, a=A)[:, 0]))
    ops.append(Operation(f"logicle 1 ch ({one})", impls,
                         [("treganalysis f32", "FlowUtils"), ("treganalysis f64", "FlowUtils")],
                         f"{len(x32):,} {'compensated' if comp is not None else 'raw'} values; FlowUtils gets them as float64, shape (n, 1)"))

    # 3b. Logicle of all fluorescence channels: a full events array with those columns transformed
    def ours_block(events: np.ndarray) -> np.ndarray:
        out = events.copy()
        out[:, fl_idx] = ta.logicle(events[:, fl_idx], T, W, M, A)
        return out

    impls = [Impl("treganalysis f32", lambda: ours_block(comp32), ours=True),
             Impl("treganalysis f64", lambda: ours_block(comp64), ours=True)]
    if fk_sample is not None:
        xform = fk.transforms.LogicleTransform(param_t=T, param_w=W, param_m=M, param_a=A)

        def fk_logicle() -> np.ndarray:
            fk_sample.apply_transform(xform)
            return fk_sample.get_events(source="xform")
        impls.append(Impl("FlowKit", fk_logicle))
    if flowutils is not None:
        impls.append(Impl("FlowUtils", lambda: flowutils.transforms.logicle(comp64, fl_idx, t=T, m=M, w=W, a=A)))
    ops.append(Operation(f"logicle {len(fl_idx)} ch", impls,
                         [(o, r) for o in ("treganalysis f32", "treganalysis f64") for r in ("FlowKit", "FlowUtils")],
                         f"{'compensated' if comp is not None else 'raw'} events; result = all columns, fluorescence ones transformed"))

    # 4. the pipeline: read + compensate + Logicle
    if comp is not None:
        def ours_pipeline() -> np.ndarray:
            c = ta.compensate(ta.read_fcs(le_path))
            out = c.events.copy()
            out[:, fl_idx] = ta.logicle(c.events[:, fl_idx], T, W, M, A)
            return out

        impls = [Impl("treganalysis", ours_pipeline, ours=True)]
        if fk is not None and spill_text is not None:
            def fk_pipeline() -> np.ndarray:
                s = fk.Sample(str(le_path), **fio_kw)
                s.apply_compensation(spill_text)
                s.apply_transform(fk.transforms.LogicleTransform(param_t=T, param_w=W, param_m=M, param_a=A))
                return s.get_events(source="xform")
            impls.append(Impl("FlowKit", fk_pipeline))
        if flowio is not None and flowutils is not None and spill_text is not None:
            def fu_pipeline() -> np.ndarray:
                ev = flowio.FlowData(str(le_path), **fio_kw).as_array()
                ev = flowutils.compensate.compensate(ev, fu_matrix, fu_cols)
                return flowutils.transforms.logicle(ev, fl_idx, t=T, m=M, w=W, a=A)
            impls.append(Impl("FlowIO+FlowUtils", fu_pipeline))
        ops.append(Operation("read+compensate+logicle", impls, [("treganalysis", i.label) for i in impls[1:]],
                             "whole first stage from the file to Logicle-scaled events"))
    return ops, info


# -- reporting -------------------------------------------------------------------------------------


def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numpy": np.__version__,
        "versions": {p: _pkg_version(p) for p in ("treganalysis", "flowio", "flowkit", "flowutils", "scipy", "pandas")},
        # read only: the script never changes these
        "environment": {k: os.environ.get(k) for k in (
            "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), None)
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration") if blas.get(k)}
    except Exception:  # numpy < 1.26 or an unusual build
        pass
    try:
        import threadpoolctl
        info["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "architecture")}
                               for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else (f"{x:.4f}" if x < 10 else f"{x:.2f}")


def _fmt_diff(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def print_tables(records: list[dict]) -> None:
    head = (f"{'operation':<34} {'ours':<17} {'reference':<17} {'ours s':>8} {'theirs s':>9} "
            f"{'speed-up':>8} {'(median)':>8} {'max|diff|':>9} {'max rel':>8}")
    print("\nTimes: best of the repeats; speed-up = theirs / ours (median-based in brackets)")
    print(head)
    print("-" * len(head))
    for rec in records:
        for c in rec["comparisons"]:
            speed = f"{c['speedup_best']:.1f}x" if c.get("speedup_best") else "-"
            med = f"({c['speedup_median']:.1f}x)" if c.get("speedup_median") else ""
            print(f"{rec['operation']:<34} {c['ours']:<17} {c['reference']:<17} {_fmt_s(c.get('ours_best_s')):>8} "
                  f"{_fmt_s(c.get('ref_best_s')):>9} {speed:>8} {med:>8} {_fmt_diff(c.get('max_abs_diff')):>9} "
                  f"{_fmt_diff(c.get('max_rel_diff')):>8}")
        for label, entry in rec["implementations"].items():
            if "error" in entry:
                print(f"{rec['operation']:<34} {label} failed: {entry['error']}")
    mem = [rec for rec in records if any("peak_mb" in e for e in rec["implementations"].values())]
    if mem:
        print("\nPeak memory allocated during one call, result included (tracemalloc, MB);"
              " in brackets: theirs / ours")
        for rec in mem:
            impls = rec["implementations"]
            ours = next((e["peak_mb"] for e in impls.values() if e["ours"] and "peak_mb" in e), None)
            cells = []
            for label, e in impls.items():
                if "peak_mb" not in e:
                    continue
                ratio = f" ({e['peak_mb'] / ours:.1f}x)" if ours and not e["ours"] else ""
                cells.append(f"{label} {e['peak_mb']:.1f}{ratio}")
            print(f"{rec['operation']:<34} " + " | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="synthetic events (default 1,000,000)")
    parser.add_argument("--file", type=Path, help="benchmark this FCS file instead of synthetic data")
    parser.add_argument("--repeats", "-k", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    parser.add_argument("--logicle-t", type=float, default=None,
                        help="Logicle T (default: the largest $PnR of the fluorescence channels)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--keep-files", action="store_true",
                        help="write the synthetic files to benchmarks/output/ instead of a temporary folder")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    machine = machine_info()
    print(f"treganalysis {machine['versions']['treganalysis']} | FlowIO {machine['versions']['flowio']} | "
          f"FlowKit {machine['versions']['flowkit']} | FlowUtils {machine['versions']['flowutils']} | "
          f"numpy {machine['numpy']}")
    print(f"{machine['platform']} | Python {machine['python']} | {machine.get('cpu_model')} | "
          f"{machine['cpu_count']} CPUs ({machine['cpus_usable']} usable) | load {machine['load_average']}")
    print(f"BLAS: {machine.get('numpy_blas')} | threadpools: {machine['threadpools']}")
    print(f"environment (not changed): {machine['environment']}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="treganalysis-bench-") as tmp:
        if args.file is not None:
            le_path, be_path = args.file, None
            data = {"source": "file", "path": str(args.file)}
        else:
            folder = HERE / "output" if args.keep_files else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            le_path, be_path = write_synthetic(folder, args.events)
            print(f"synthetic files: {le_path.name}, {be_path.name} ({le_path.stat().st_size / 1e6:.0f} MB each, "
                  f"{time.perf_counter() - t0:.1f} s to make) in {folder}")
            data = {"source": "synthetic", "events": args.events, "channels": SCATTER + FLUORO + ["Time"],
                    "markers": MARKERS, "spillover": SPILL.tolist(), "kept_in": str(folder) if args.keep_files else None}
            same = _agreement(ta.read_fcs(le_path).events, ta.read_fcs(be_path).events)["max_abs_diff"]
            print(f"big-endian twin read back identical: {same == 0.0} (max |diff| {same})")
        ops, info = build_operations(le_path, be_path, args.logicle_t)
        data.update(info)
        print(f"{info['events']:,} events x {info['channels']} channels, $BYTEORD {info['byteorder']}, "
              f"Logicle {info['logicle']}; {args.repeats} repeats after a warm-up")
        # Everything alive now (modules, prepared inputs) is moved out of the collector's sight:
        # the gc.collect() before every run then costs microseconds instead of ~0.15 s, and
        # still frees the garbage (e.g. reference cycles) of the previous run.
        gc.collect()
        gc.freeze()
        try:
            records = [measure(op, args.repeats, not args.no_memory) for op in ops]
        finally:
            gc.unfreeze()
        del ops  # they hold the prepared arrays and the files' paths

    print_tables(records)
    elapsed = time.perf_counter() - started
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "treganalysis foundation vs FlowIO/FlowKit/FlowUtils",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "data": data,
        "timing": {"clock": "time.perf_counter", "warmup_runs": 1, "repeats": args.repeats,
                   "statistic": "min (best) of repeats; median also given", "speedup": "reference / ours",
                   "memory": None if args.no_memory else "tracemalloc peak of one call, result included"},
        "results": records,
        "elapsed_s": elapsed,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\n{elapsed:.0f} s in all; numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
