"""How often acquisition QC (treganalysis.qc) finds the artefacts the simulator injects.

Simulates clean samples and samples with one artefact each (a clog, a signal drift on one
detector, margin events, too few events), writes each as an FCS file, reads it back and runs the
real QC as ``gate_sample`` does (``_prepare`` then ``_qc``, default settings), then prints a
markdown table. A measurement tool, not a test: it asserts nothing.

    python benchmarks/qc_detection.py [--reps 20] [--events 100000] [--seed 0] [--verbose]

What counts as detected, per kind (the simulator records what it injected):

- clog: a removed time-QC run overlaps the clog window (from its start to its end plus the
  burst of held-back events, 0.5% of the run);
- drift: a removed run names the drifted detector (``"<detector> signal"``); split by whether the
  detector is a gating channel, another channel of the panel, or outside the panel (the same
  drifted sample with that detector's ``$PnS`` blanked, so the panel does not resolve it);
- margin: status warn (or fail) with a "channel's ceiling" reason;
- low events (``events * 0.15``): status warn or fail with an "events left" reason.

False alarms: time-QC runs the artefact does not explain (clean, margin and low-event samples:
any removed run; clog: a run away from the window; drift: a run that does not name the detector);
for clean samples also any status other than pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from treganalysis.fcs import read_fcs
from treganalysis.gating.strategy import _prepare, _qc
from treganalysis.simulate import SampleSpec, _write_sample, load_config, simulate_events

KINDS = ("clean", "clog", "drift", "margin", "low events")


def run_qc(sample):
    """The QC of gate_sample with the default configuration: (result, gating channels, panel)."""
    _, panel, comp, channels = _prepare(sample, {})
    return _qc(sample, comp, channels, {}, panel), channels, panel


def blank_marker(sample, detector: str):
    """The sample with one channel's $PnS removed: the panel no longer resolves that marker."""
    j = sample.channels.index(detector)
    markers = list(sample.markers)
    markers[j] = ""
    return dataclasses.replace(sample, markers=markers)


def judge(kind: str, result, sim_record: dict, cfg: dict, detector_in_signals: bool = True) -> dict:
    runs = result.record["time"].get("removed_runs", [])
    row = {"status": result.status, "removed": result.record["events"]["removed_share"], "runs": runs}
    if kind == "clog":
        start = sim_record["clog_start_s"]
        stop = sim_record["clog_stop_s"] + 0.005 * float(cfg["acquisition_seconds"])  # the burst after it
        hits = [r for r in runs if r["start"] < stop and r["stop"] > start]
        row["detected"] = bool(hits)
        row["false_alarm"] = len(hits) < len(runs)
        row["span"] = sum(r["stop"] - r["start"] for r in hits)
    elif kind == "drift":
        detector = sim_record["drift_detector"]
        named = [r for r in runs if any(w == f"{detector} signal" for w in r["why"])]
        row["detected"] = bool(named)
        row["false_alarm"] = len(named) < len(runs)
    elif kind == "margin":
        row["detected"] = result.status in ("warn", "fail") and any("channel's ceiling" in r for r in result.reasons)
        row["false_alarm"] = bool(runs)
    elif kind == "low events":
        row["detected"] = result.status in ("warn", "fail") and any("events left" in r for r in result.reasons)
        row["false_alarm"] = bool(runs)
    else:  # clean
        row["detected"] = None
        row["false_alarm"] = bool(runs) or result.status != "pass"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="samples per artefact kind (default 20)")
    parser.add_argument("--events", type=int, default=100_000, help="events per sample (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--verbose", action="store_true", help="one line per sample")
    args = parser.parse_args()
    cfg = load_config()
    cd4 = dict(cfg["cd4"]["patient"])
    rows: dict[str, list[dict]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for k, kind in enumerate(KINDS):
            for rep in range(args.reps):
                rng = np.random.default_rng([args.seed, k, rep])
                n = int(args.events * 0.15) if kind == "low events" else args.events
                flags = {kind: True} if kind in ("clog", "drift", "margin") else {}
                sim = simulate_events(SampleSpec(n_events=n, cd4=cd4, **flags), cfg, rng)
                path = Path(folder) / f"{kind.replace(' ', '_')}_{rep}.fcs"
                _write_sample(path, sim.events, cfg, rng, path.stem, 0)
                sample = read_fcs(path)
                result, channels, panel = run_qc(sample)
                label = kind
                if kind == "drift":
                    detector = sim.record["drift_detector"]
                    gating = detector in channels.values()
                    label = "drift, gating channel" if gating else "drift, other panel channel"
                    if not gating:
                        # the same acquisition with the drifted channel outside the panel
                        outside = blank_marker(sample, detector)
                        result_out, _, panel_out = run_qc(outside)
                        assert detector not in panel_out.values()
                        row = judge(kind, result_out, sim.record, cfg)
                        row["detail"] = detector
                        rows.setdefault("drift, outside the panel", []).append(row)
                row = judge(kind, result, sim.record, cfg)
                row["detail"] = sim.record.get("drift_detector") or sim.record.get("clog_start_s") or ""
                rows.setdefault(label, []).append(row)
                if args.verbose:
                    print(f"{label:28s} {rep:3d} {row['status']:5s} detected={row['detected']} "
                          f"false_alarm={row['false_alarm']} removed={100 * row['removed']:.1f}% {row['detail']} "
                          f"{[(round(r['start'], 1), round(r['stop'], 1), r['why']) for r in row['runs']]}", flush=True)
    elapsed = time.perf_counter() - began

    order = ["clean", "clog", "drift, gating channel", "drift, other panel channel", "drift, outside the panel",
             "margin", "low events"]
    print(f"\nAcquisition QC on simulated samples: {args.reps} per kind, {args.events:,} events "
          f"(low events: {int(args.events * 0.15):,}), seed {args.seed}, default qc settings; "
          f"{elapsed:.0f} s on {platform.machine()} Python {platform.python_version()}\n")
    print("| artefact | n | detected | false alarms | pass / warn / fail | median % of events removed |")
    print("|---|---:|---:|---:|---|---:|")
    for label in order:
        group = rows.get(label, [])
        if not group:
            print(f"| {label} | 0 | - | - | - | - |")
            continue
        n = len(group)
        detected = "-" if label == "clean" else f"{sum(r['detected'] for r in group)}/{n}"
        false = f"{sum(r['false_alarm'] for r in group)}/{n}"
        status = Counter(r["status"] for r in group)
        counts = f"{status['pass']} / {status['warn']} / {status['fail']}"
        removed = 100 * float(np.median([r["removed"] for r in group]))
        print(f"| {label} | {n} | {detected} | {false} | {counts} | {removed:.1f} |")
    clogs = rows.get("clog", [])
    if clogs:
        spans = [r["span"] for r in clogs if r["detected"]]
        window = 0.05 * float(cfg["acquisition_seconds"])
        if spans:
            print(f"\nClog window {window:.1f} s (+{0.005 * float(cfg['acquisition_seconds']):.1f} s burst); "
                  f"removed span around it: median {np.median(spans):.1f} s "
                  f"(range {min(spans):.1f}-{max(spans):.1f} s).")
    missed = []
    for label in order[1:]:
        counts = Counter(str(r["detail"]) for r in rows.get(label, []) if not r["detected"])
        if counts:
            missed.append(f"{label}: " + ", ".join(f"{d} x{c}" if c > 1 else d for d, c in sorted(counts.items())))
    if missed:
        print("Missed (drifted detector or clog start): " + "; ".join(missed) + ".")


if __name__ == "__main__":
    main()
