#!/usr/bin/env python
"""The whole per-sample pipeline, stage by stage, next to FlowKit doing the equivalent work.

In one run and on the SAME simulated file per size (``treganalysis.simulate``), best of
``--repeats`` after a warm-up, with ours and FlowKit taking turns within each repeat:

* each stage of ours: read (``read_fcs``), compensation (``compensate``), acquisition QC
  (``qc.qc_sample``), transform (Logicle of the gating channels with W estimated per channel,
  ``strategy._transform``), the gating hierarchy (thresholds and scatter gates chosen from the
  data and applied, ``strategy._Engine``; timed per gate too), the population table
  (``population_table``), the gate views (``views.gate_views``), the file's SHA-256 (provenance),
  writing the three outputs, ``gate_sample`` as a whole, and the per-sample job as the command
  line runs it (``treganalysis.cli.main(["gate", FILE, "--out", DIR])`` in-process, and
  ``python -m treganalysis gate`` as a subprocess, start-up and imports included);
* FlowKit on the same file: ``flowkit.Sample(path)``; ``apply_compensation`` with the file's
  ``$SPILLOVER``; Logicle of the same gating channels with the same T/W/M/A
  (``Sample.apply_transform({channel: LogicleTransform})``); a 7-gate tree (range gate on FSC-A,
  singlet polygon above FSC-H = cut x FSC-A, lymphocyte ellipse on FSC-A/SSC-A, range gates for
  viability, CD3 and CD4, a CD25+ FOXP3+ rectangle) built with ``Session``/``GatingStrategy``
  and applied with ``analyze_samples(use_mp=False)`` + ``get_gating_results``, its gate
  parameters taken from our result so that both draw the same gates; the population table
  (FlowKit's report, plus the marker medians of each population from its compensated events);
  the whole job (read, gate, table, write a TSV) in-process and as a subprocess;
* peak memory (``/usr/bin/time -v``, maximum resident set size) of each subprocess job, next to
  n x p x 4 bytes of the raw event matrix and the interpreter's RSS after the imports alone;
* per-job start-up: ``python -m treganalysis --version``, ``-X importtime`` of a gate job (the
  package's import time, the largest imports, and whether pandas, scipy, scikit-learn, plotly or
  statsmodels are imported);
* with ``--cohort [PAIRS]``: the workflow's demo (24 samples of 100,000 events, the default
  ``config/config.yaml``) with ``snakemake --cores 1`` and then ``--cores 2`` in fresh temporary
  folders, PAIRS times: wall times, each pair's speed-up and their median, the best 1-core run
  against the best 2-core run (as the per-sample rows read best against best), and the serial
  parts from Snakemake's log.

FlowKit is handed the gates we chose and only applies them (it chooses nothing, runs no QC and
draws no views), and evaluates 7 gates where we evaluate 11, so its ratios understate the
difference in work. A measurement tool, not a test: nothing about timings is asserted. The
environment (BLAS threads, ``OPENBLAS_CORETYPE``) is left as it is and reported.

Usage::

    python benchmarks/bench_pipeline.py                              # 100,000 and 1,000,000 events
    python benchmarks/bench_pipeline.py --events 200000 --repeats 5
    python benchmarks/bench_pipeline.py --cohort 3 --out perf.md     # + 3 pairs of the 24-sample demo
"""

from __future__ import annotations

# Only the standard library at the top: the script also runs as FlowKit's per-sample job
# (``--flowkit-job``), whose start-up and memory must not include treganalysis.
import argparse
import contextlib
import datetime as _dt
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _measure import peak_mb, timed  # benchmarks/, the script's folder

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
TIME = "/usr/bin/time"


# -- FlowKit's side (also the body of the ``--flowkit-job`` subprocess) ----------------------------


def flowkit_strategy(params: dict[str, Any]):
    """FlowKit's gate tree with our thresholds: 7 gates, fluorescence on the file's compensation
    (``compensation_ref="FCS"``) and each channel's Logicle, scatter uncompensated and linear."""
    import flowkit as fk

    strategy = fk.GatingStrategy()
    for channel, p in params["logicle"].items():
        strategy.add_transform(f"logicle_{channel}", fk.transforms.LogicleTransform(p["T"], p["W"], p["M"], p["A"]))

    def fl(key: str, low=None, high=None):
        channel = params["channels"][key]
        return fk.Dimension(channel, compensation_ref="FCS", transformation_ref=f"logicle_{channel}",
                            range_min=low, range_max=high)

    def sc(channel: str, low=None, high=None):
        return fk.Dimension(channel, compensation_ref="uncompensated", range_min=low, range_max=high)

    g = params["gates"]
    far, cut = 1e9, g["singlet_cut"]
    path = ("root",)
    tree = [
        fk.gates.RectangleGate("cells", [sc("FSC-A", low=g["fsc_min"])]),
        fk.gates.PolygonGate("singlets", [sc("FSC-A"), sc("FSC-H")],
                             [(-far, -far * cut), (far, far * cut), (far, 10 * far), (-far, 10 * far)]),
        fk.gates.EllipsoidGate("lymphocytes", [sc("FSC-A"), sc("SSC-A")], g["lymph_mean"], g["lymph_cov"],
                               g["lymph_d2"]),
        fk.gates.RectangleGate("live", [fl("viability", high=g["viability"])]),
        fk.gates.RectangleGate("cd3", [fl("cd3", low=g["cd3"])]),
        fk.gates.RectangleGate("cd4", [fl("cd4", low=g["cd4"])]),
        fk.gates.RectangleGate("treg", [fl("cd25", low=g["cd25"]), fl("foxp3", low=g["foxp3"])]),
    ]
    session = fk.Session(gating_strategy=strategy)
    for gate in tree:
        session.add_gate(gate, path)
        path = (*path, gate.gate_name)
    return session.gating_strategy


def flowkit_gate(sample, params: dict[str, Any]):
    """Apply the gate tree to a loaded ``flowkit.Sample``: a Session, ``analyze_samples``
    without multiprocessing (as inside a workflow job), and the results."""
    import flowkit as fk

    session = fk.Session(gating_strategy=flowkit_strategy(params), fcs_samples=[sample])
    session.analyze_samples(use_mp=False)
    return session.get_gating_results(sample.id)


def flowkit_table(results, comp_events, params: dict[str, Any]):
    """FlowKit's report (count, % of parent, % of all) plus the medians of each population's
    compensated events on the panel's markers (FlowKit has no medians of its own)."""
    import numpy as np

    report = results.report.copy()
    cols = params["median_columns"]
    medians = []
    for name in report["gate_name"]:
        mask = results.get_gate_membership(name)
        medians.append(np.median(comp_events[np.flatnonzero(mask)][:, cols], axis=0) if mask.any()
                       else np.full(len(cols), np.nan))
    for j, marker in enumerate(params["median_markers"]):
        report[f"median_{marker}"] = [float(m[j]) for m in medians]
    return report


def flowkit_job(path: str, out: str, params: dict[str, Any]) -> None:
    """FlowKit's per-sample job: read, gate, compensate for the medians, write the table."""
    import flowkit as fk

    sample = fk.Sample(path)
    results = flowkit_gate(sample, params)
    sample.apply_compensation(params["spill_text"])  # the gate tree's compensation is not kept
    table = flowkit_table(results, sample.get_events(source="comp"), params)
    Path(out).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out) / "populations.tsv", sep="\t", index=False)


# -- measuring ------------------------------------------------------------------------------------


def compare(repeats: int, ours: Callable[[], Any] | None, theirs: Callable[[], Any] | None) -> tuple[float | None, float | None]:
    """Best of ``repeats`` after one warm-up each; ours and theirs take turns within a repeat."""
    fns = [f for f in (ours, theirs) if f is not None]
    for f in fns:
        timed(f)
    best = {id(f): float("inf") for f in fns}
    for _ in range(repeats):
        for f in fns:
            best[id(f)] = min(best[id(f)], timed(f)[0])
    return (best[id(ours)] if ours else None), (best[id(theirs)] if theirs else None)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_command(cmd: list[str], cwd: Path | None = None, memory: bool = True,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command once (under ``/usr/bin/time -v`` when there is one): wall time, peak RSS."""
    use_time = memory and Path(TIME).exists()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        full = [TIME, "-v", "-o", report.name, *cmd] if use_time else cmd
        start = time.perf_counter()
        proc = subprocess.run(full, cwd=cwd, env=_env(env), capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        text = report.read() if use_time else ""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": wall, "max_rss_mb": int(rss.group(1)) / 1024 if rss else None, "stderr": proc.stderr,
            "stdout": proc.stdout}


def best_command(cmd: list[str], repeats: int, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    """Best wall time of ``repeats`` runs after a warm-up; the largest peak RSS seen."""
    run_command(cmd, cwd, env=env)  # warm-up: files and interpreter in the OS cache
    return _summary([run_command(cmd, cwd, env=env) for _ in range(repeats)])


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best wall time, largest peak RSS and the last run of a command's repeats."""
    rss = [r["max_rss_mb"] for r in runs if r["max_rss_mb"] is not None]
    return {"wall_s": min(r["wall_s"] for r in runs), "max_rss_mb": max(rss) if rss else None, "last": runs[-1]}


def commands_in_turns(cmds: list[list[str]], repeats: int,
                      env: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """The commands after a warm-up each, taking turns within every repeat (so that a slow
    stretch of a shared machine slows all of them): each one's best wall time and largest peak
    RSS, and for each command but the last (FlowKit's) the ratio last / it of every repeat."""
    for cmd in cmds:
        run_command(cmd, env=env)  # warm-up: files and interpreter in the OS cache
    runs: list[list[dict[str, Any]]] = [[] for _ in cmds]
    for _ in range(repeats):
        for i, cmd in enumerate(cmds):
            runs[i].append(run_command(cmd, env=env))
    ratios = [[b["wall_s"] / a["wall_s"] for a, b in zip(mine, runs[-1])] for mine in runs[:-1]]
    return [_summary(r) for r in runs], ratios


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """``-X importtime`` lines as (module, depth, self us, cumulative us)."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((m.group(4), len(m.group(3)) // 2, int(m.group(1)), int(m.group(2))))
    return rows


# -- the measurements of one size -----------------------------------------------------------------


def make_file(folder: Path, n: int) -> Path:
    """One simulated sample of ``n`` events (a patient's baseline), written as the simulator does."""
    import numpy as np

    from treganalysis.simulate import SampleSpec, _write_sample, load_config, simulate_events

    config = load_config()
    sim = simulate_events(SampleSpec(n_events=n, cd4=dict(config["cd4"]["patient"])), config, np.random.default_rng(1))
    path = folder / f"sample_{n}.fcs"
    _write_sample(path, sim.events, config, np.random.default_rng(1), f"bench{n}", 0)
    return path


def flowkit_params(result, path: Path) -> dict[str, Any]:
    """The gates of FlowKit's tree from our result: thresholds (Logicle units), scatter gates."""
    from treganalysis.fcs import SPILLOVER_KEYWORDS, read_text

    text = read_text(path)
    spill_text = next(text[k] for k in SPILLOVER_KEYWORDS if text.get(k, "").strip())
    thresholds = {r["threshold"]: r for r in result.gates if "threshold" in r and "population" not in r}
    pops = {r["population"]: r for r in result.gates if "population" in r}
    transforms = result.provenance["transforms"]
    channels = {t: thresholds[t]["channel"] for t in ("viability", "cd3", "cd4", "cd25", "foxp3")}
    markers = [m for m, c in result.panel.items() if c]
    return {
        "spill_text": spill_text,
        "logicle": {c: p for c, p in transforms.items() if p.get("transform") == "logicle"},
        "channels": channels,
        "gates": {
            "fsc_min": thresholds["fsc_debris"]["value_raw"],
            "singlet_cut": pops["singlets"]["cuts"][0]["value"],
            "lymph_mean": pops["lymphocytes"]["mean"], "lymph_cov": pops["lymphocytes"]["covariance"],
            "lymph_d2": pops["lymphocytes"]["distance_square"],
            **{t: thresholds[t]["value"] for t in channels},
        },
        "median_markers": markers,
        "median_columns": [result.sample.index(result.panel[m]) for m in markers],
    }


def measure_size(n: int, repeats: int, folder: Path) -> dict[str, Any]:
    import numpy as np

    import flowkit as fk
    import treganalysis as ta
    import treganalysis.cli as cli
    from treganalysis._files import records_tsv, write_bytes_atomic
    from treganalysis.gating import strategy as st
    from treganalysis.qc import qc_sample
    from treganalysis.views import gate_views, save_views

    print(f"\n== {n:,} events ==", flush=True)
    t0 = time.perf_counter()
    path = make_file(folder, n)
    print(f"  simulated {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    out_dir = folder / f"out_{n}"
    rows: list[dict[str, Any]] = []

    def row(stage: str, ours: float | None, theirs: float | None, note: str = "",
            fn: Callable[[], Any] | None = None) -> None:
        rows.append({"stage": stage, "ours": ours, "theirs": theirs, "note": note, "fn": fn})
        ratio = f"{theirs / ours:6.1f}x" if ours and theirs else ""
        fmt = lambda v: f"{v:8.3f} s" if v is not None else " " * 10  # noqa: E731
        print(f"  {stage:<44} ours {fmt(ours)}  FlowKit {fmt(theirs)}  {ratio}", flush=True)

    # inputs of each stage, prepared untimed
    sample = ta.read_fcs(path)
    template, panel, comp, channels = st._prepare(sample, {})
    gating_channels = [c for c in channels.values() if c]
    signals = [c for c in panel.values() if c]
    qc = qc_sample(sample, comp, gating_channels, {}, signals=signals)
    transformed, transforms = st._transform(comp, channels, {})
    result = ta.gate_sample(sample)
    params = flowkit_params(result, path)
    fk_sample = fk.Sample(str(path))
    fk_comp = fk.Sample(str(path))
    fk_comp.apply_compensation(params["spill_text"])
    fk_comp_events = fk_comp.get_events(source="comp")
    xforms = {c: fk.transforms.LogicleTransform(p["T"], p["W"], p["M"], p["A"]) for c, p in params["logicle"].items()}
    fk_results = flowkit_gate(fk_sample, params)

    # 1. read
    row("read", *compare(repeats, lambda: ta.read_fcs(path), lambda: fk.Sample(str(path))),
        fn=lambda: ta.read_fcs(path))

    # 2. compensation
    def fk_compensate():
        fk_sample.apply_compensation(params["spill_text"])
        return fk_sample.get_events(source="comp")

    row("compensation", *compare(repeats, lambda: ta.compensate(sample), fk_compensate),
        f"{len(comp.compensation['channels'])} channels", fn=lambda: ta.compensate(sample))

    # 3. acquisition QC (FlowKit has none)
    run_qc = lambda: qc_sample(sample, comp, gating_channels, {}, signals=signals)  # noqa: E731
    row("acquisition QC", *compare(repeats, run_qc, None), "margins, time bins, compensation checks", fn=run_qc)

    # 4. Logicle of the gating channels
    def fk_transform():
        fk_comp.apply_transform(xforms)
        return fk_comp.get_events(source="xform")

    row(f"transform ({len(params['logicle'])} ch Logicle)",
        *compare(repeats, lambda: st._transform(comp, channels, {}), fk_transform),
        "ours estimates W per channel too", fn=lambda: st._transform(comp, channels, {}))

    # 5. the gating hierarchy: ours chooses and applies; FlowKit applies (and compensates and
    #    transforms inside, per gate: that is how its GatingStrategy works)
    per_gate: dict[str, float] = {}

    class TimedEngine(st._Engine):
        def gate(self, gate):
            start = time.perf_counter()
            super().gate(gate)
            took = time.perf_counter() - start
            per_gate[gate["population"]] = min(per_gate.get(gate["population"], float("inf")), took)

    def ours_hierarchy():
        engine = TimedEngine(comp, transformed, transforms, panel, template)
        engine.run(qc.keep)
        return engine

    row("gating hierarchy", *compare(repeats, ours_hierarchy, lambda: flowkit_gate(fk_sample, params)),
        "ours: 11 gates, 9 fits; FlowKit: 7 fixed gates, incl. its compensation + Logicle", fn=ours_hierarchy)
    engine = ours_hierarchy()

    # 6. population table
    table = lambda: st.population_rows(comp, engine.masks, engine.parents, panel, engine.status, root=qc.keep)  # noqa: E731
    row("population table", *compare(repeats, table, lambda: flowkit_table(fk_results, fk_comp_events, params)),
        f"{len(engine.masks)} vs 7 populations x {len(params['median_columns'])} medians", fn=table)

    # 7. gate views, provenance hash, outputs (ours only)
    row("gate views", *compare(repeats, lambda: gate_views(result), None), "binned 2-D views, histograms",
        fn=lambda: gate_views(result))
    row("file SHA-256 (provenance)", *compare(repeats, lambda: st._sha256(path), None))
    views = gate_views(result)
    out_w = folder / f"write_{n}"
    out_w.mkdir(exist_ok=True)

    def write_outputs():
        write_bytes_atomic(out_w / "populations.tsv", records_tsv(result.rows).encode("utf-8"))
        write_bytes_atomic(out_w / "gates.json", result.to_json().encode("utf-8"))
        save_views(views, out_w / "views.npz")

    row("write outputs", *compare(repeats, write_outputs, None), "populations.tsv, gates.json, views.npz")

    # 8. gate_sample as a whole (from the read sample), and the in-process jobs
    row("gate_sample (compensation to table)", *compare(
        repeats, lambda: ta.gate_sample(sample),
        lambda: flowkit_table(flowkit_gate(fk_sample, params), fk_compensate(), params)),
        "FlowKit: gate tree + compensation + table", fn=lambda: ta.gate_sample(sample))

    def ours_job():
        with contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["gate", str(path), "--out", str(out_dir / "ours")])
        assert status == 0

    row("per-sample job, in-process", *compare(
        repeats, ours_job, lambda: flowkit_job(str(path), str(out_dir / "flowkit"), params)),
        "`cli.main(['gate', ...])` vs read + gate + table + TSV", fn=ours_job)

    def ours_job_two_threads():
        with contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["gate", str(path), "--out", str(out_dir / "ours_2"), "--threads", "2"])
        assert status == 0

    row("per-sample job, in-process, 2 threads", *compare(
        repeats, ours_job_two_threads, lambda: flowkit_job(str(path), str(out_dir / "flowkit"), params)),
        "ours `--threads 2`: QC beside the transforms, the mixture's starts side by side, the table beside "
        "the views, BLAS held to 1 thread; "
        "FlowKit as above", fn=ours_job_two_threads)

    # peak memory of each of our stages, in a separate pass (tracemalloc slows what it traces)
    for r in rows:
        fn = r.pop("fn")
        r["ours_peak_mb"] = peak_mb(fn) if fn is not None else None

    # 9. the jobs as subprocesses: wall time and peak RSS
    params_file = folder / f"params_{n}.json"
    params_file.write_text(json.dumps(params))
    py = sys.executable
    ours_cmd = [py, "-m", "treganalysis", "gate", str(path), "--out", str(out_dir / "ours_sub")]
    two_cmd = [*ours_cmd[:-1], str(out_dir / "ours_sub_2"), "--threads", "2"]
    theirs_cmd = [py, str(HERE), "--flowkit-job", str(path), str(out_dir / "flowkit_sub"), str(params_file)]
    print("  subprocess jobs ...", flush=True)
    (ours_sub, ours_two, theirs_sub), (ratios, ratios_two) = commands_in_turns([ours_cmd, two_cmd, theirs_cmd], repeats)
    row("per-sample job, subprocess", ours_sub["wall_s"], theirs_sub["wall_s"],
        f"`python -m treganalysis gate` vs the FlowKit job script; {_paired(ratios)}")
    row("per-sample job, subprocess, 2 threads", ours_two["wall_s"], theirs_sub["wall_s"],
        f"ours `--threads 2` (BLAS held to 1 thread), in the same turns as the row above; {_paired(ratios_two)}")
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if all(os.environ.get(k) == v for k, v in one.items()):
        # (--threads 1) the rows above already ran with one BLAS thread: the same setting again
        # would only measure the machine's drift
        next(r for r in rows if r["stage"] == "per-sample job, subprocess")["note"] += (
            "; one BLAS thread (the environment's), as the workflow's gate rule runs it")
    else:
        (ours_one, theirs_one), (ratios_one,) = commands_in_turns([ours_cmd, theirs_cmd], repeats, env=one)
        row("per-sample job, subprocess, BLAS 1 thread", ours_one["wall_s"], theirs_one["wall_s"],
            f"as the workflow's gate rule runs it (`OPENBLAS_NUM_THREADS=1` ...); {_paired(ratios_one)}")

    for r in rows:
        r.pop("fn", None)
        r.setdefault("ours_peak_mb", None)

    # agreement of the memberships (ours also removes QC events, FlowKit does not)
    agreement = {p: float(np.mean(fk_results.get_gate_membership(p) == result.mask(p)))
                 for p in ("cells", "singlets", "lymphocytes", "live", "cd3", "cd4", "treg")}
    return {"n": n, "channels": sample.n_channels, "file_mb": path.stat().st_size / 1e6, "rows": rows,
            "per_gate": per_gate, "ours_job": ours_sub, "ours_job_two": ours_two, "flowkit_job": theirs_sub, "agreement": agreement,
            "qc_removed": int(n - qc.keep.sum()), "paths": {"file": path, "params": params_file}}


def _paired(ratios: list[float]) -> str:
    """The ratios of the runs that took turns, for the notes column."""
    return "ratio of each turn " + ", ".join(f"{r:.1f}x" for r in ratios) + f" (median {statistics.median(ratios):.1f}x)"


_TINY = 2_000  # events of the file whose job gives the fixed part of a job's memory

# what a gating job should not import (each costs 0.3-2 s of start-up per job)
_HEAVY = ("pandas", "scipy", "sklearn", "plotly", "statsmodels")


def measure_startup(path: Path, params_file: Path, folder: Path, repeats: int) -> dict[str, Any]:
    """Start-up and imports of a job, and the baseline RSS of the interpreter with the imports."""
    py = sys.executable
    print("\n== start-up and imports ==", flush=True)
    out: dict[str, Any] = {}
    out["python_pass"] = best_command([py, "-c", "pass"], repeats)
    out["version"] = best_command([py, "-m", "treganalysis", "--version"], repeats)
    out["import_ours"] = best_command([py, "-c", "import treganalysis.cli"], repeats)
    out["import_flowkit"] = best_command([py, "-c", "import flowkit"], repeats)
    # the same job on a file too small for its events to count: the interpreter, the code pages
    # and fixed-size buffers a gating job touches whatever the file (what does not grow with it)
    tiny = make_file(folder, _TINY)
    out["tiny_job"] = best_command([py, "-m", "treganalysis", "gate", str(tiny), "--out", str(folder / "tiny_out")],
                                   repeats)
    for key in ("python_pass", "version", "import_ours", "import_flowkit"):
        print(f"  {key:<16} {out[key]['wall_s']:.3f} s, peak RSS {out[key]['max_rss_mb']:.0f} MB", flush=True)

    def importtime(cmd: list[str]) -> list[tuple[str, int, int, int]]:
        best = None
        for _ in range(max(repeats, 1)):
            rows = parse_importtime(run_command(cmd, memory=False)["stderr"])
            total = sum(r[3] for r in rows if r[1] == 0)
            if best is None or total < best[0]:
                best = (total, rows)
        return best[1]

    ours_rows = importtime([py, "-X", "importtime", "-m", "treganalysis", "gate", str(path), "--out",
                            str(folder / "importtime_ours")])
    theirs_rows = importtime([py, "-X", "importtime", str(HERE), "--flowkit-job", str(path),
                              str(folder / "importtime_flowkit"), str(params_file)])
    cumulative = lambda rows, name: next((r[3] for r in rows if r[0] == name), 0) / 1e6  # noqa: E731
    modules = {r[0] for r in ours_rows}
    out["ours_imports"] = {
        "treganalysis": cumulative(ours_rows, "treganalysis"),
        "treganalysis.cli": cumulative(ours_rows, "treganalysis.cli"),
        "all": sum(r[3] for r in ours_rows if r[1] == 0) / 1e6,
        "top": sorted(((r[0], r[3] / 1e6) for r in ours_rows if r[1] <= 1), key=lambda t: -t[1])[:12],
        **{heavy: sorted(m for m in modules if m.split(".")[0] == heavy) for heavy in _HEAVY},
        "modules": len(modules),
    }
    out["flowkit_imports"] = {"flowkit": cumulative(theirs_rows, "flowkit"),
                              "all": sum(r[3] for r in theirs_rows if r[1] == 0) / 1e6,
                              "modules": len({r[0] for r in theirs_rows})}
    oi = out["ours_imports"]
    print(f"  gate job imports: treganalysis {oi['treganalysis']:.3f} s + treganalysis.cli {oi['treganalysis.cli']:.3f} s "
          f"(all {oi['all']:.3f} s, {oi['modules']} modules); "
          + ", ".join(f"{heavy}: {bool(oi[heavy])}" for heavy in _HEAVY), flush=True)
    print(f"  FlowKit job imports: flowkit {out['flowkit_imports']['flowkit']:.3f} s", flush=True)
    return out


# -- the cohort -----------------------------------------------------------------------------------


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def snakemake_phases(log: str) -> dict[str, Any]:
    """Per job start/end from Snakemake's log (1-s timestamps): the serial parts of the run."""
    stamp = None
    pending_rule = None
    starts: dict[str, tuple[str, _dt.datetime]] = {}
    ends: dict[str, _dt.datetime] = {}
    for line in log.splitlines():
        m = _STAMP.match(line.strip())
        if m:
            stamp = _dt.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            pending_rule = (m.group(1), stamp)
            continue
        m = re.match(r"^jobid: (\d+)$", line.strip())
        if m and pending_rule is not None:
            starts[m.group(1)] = pending_rule
            pending_rule = None
            continue
        m = re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$", line.strip())
        if m and stamp is not None:
            ends[m.group(1)] = stamp
    jobs = [(rule, start, ends[j]) for j, (rule, start) in starts.items() if j in ends and start is not None]
    by_rule: dict[str, list[float]] = {}
    for rule, start, end in jobs:
        by_rule.setdefault(rule, []).append((end - start).total_seconds())
    gates = [(s, e) for r, s, e in jobs if r == "gate"]
    return {"rules": {r: {"jobs": len(v), "sum_s": sum(v), "max_s": max(v)} for r, v in by_rule.items()},
            "gate_phase_s": (max(e for _, e in gates) - min(s for s, _ in gates)).total_seconds() if gates else None}


def measure_cohort(pairs: int) -> list[dict[int, dict[str, Any]]]:
    """``pairs`` demo runs with ``--cores 1`` then ``--cores 2``, each in a fresh folder: the pairs'
    speed-ups, not one pair's, since this machine's speed drifts between runs."""
    runs = []
    for pair in range(1, pairs + 1):
        results = {}
        for cores in (1, 2):
            print(f"\n== cohort demo, pair {pair} of {pairs}, --cores {cores} ==", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"cohort{cores}_") as work:
                cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", work,
                       "--configfile", str(REPO / "config" / "config.yaml"), "--cores", str(cores)]
                run = run_command(cmd, memory=False)
                phases = snakemake_phases(run["stderr"] + "\n" + run["stdout"])
                samples = len(list(Path(work, "results", "samples").iterdir()))
            results[cores] = {"wall_s": run["wall_s"], "samples": samples, **phases}
            print(f"  {samples} samples, wall {run['wall_s']:.1f} s; jobs: " +
                  ", ".join(f"{r} {v['jobs']} x (sum {v['sum_s']:.0f} s)" for r, v in phases["rules"].items()),
                  flush=True)
        runs.append(results)
    return runs


# -- the report ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, distributions, version

    import numpy as np

    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    versions = {}
    for name in ("treganalysis", "numpy", "scipy", "pandas", "scikit-learn", "flowkit", "flowio", "flowutils", "snakemake"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    # every `snakemake` command imports each installed executor plugin (the SLURM one: pandas and more)
    plugins = sorted({f"{d.metadata['Name']} {d.version}" for d in distributions()
                      if (d.metadata["Name"] or "").lower().startswith("snakemake-executor-plugin-")})
    blas = ""
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
                         for i in threadpool_info())
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "treganalysis"],
                               capture_output=True, text=True).stdout.strip()
        commit += " (package files modified in the work tree)" if dirty else ""
    return {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None, "cpu": cpu,
        "platform": platform.platform(), "python": platform.python_version(), "versions": versions, "blas": blas,
        "plugins": plugins,
        "numpy_config": np.__version__, "commit": commit, "loadavg": os.getloadavg(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                               "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def compile_package() -> str:
    """Compile the package's modules to bytecode (``__pycache__``), as pip does when it installs
    a package: an editable install under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile
    every module in every job (about 60 ms of each subprocess), which FlowKit, installed with
    its bytecode, never pays."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("treganalysis")
    if spec is None or not spec.submodule_search_locations:
        return "package not found"
    folder = Path(list(spec.submodule_search_locations)[0])
    ok = compileall.compile_dir(str(folder), quiet=1)
    return f"{folder} compiled{'' if ok else ' (with errors)'}"


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"**{theirs / ours:.1f}x**" if ours and theirs else "–"


def render(sizes: list[dict], startup: dict | None, cohort: list[dict] | None, info: dict, args: argparse.Namespace,
           elapsed: float) -> str:
    lines: list[str] = []
    add = lines.append
    ev = ",".join(str(s["n"]) for s in sizes)
    add(f"Measured {info['date']} with `python benchmarks/bench_pipeline.py --events {ev} --repeats {args.repeats}"
        f"{f' --cohort {len(cohort)}' if cohort else ''}{f' --threads {args.threads}' if args.threads is not None else ''}` ({elapsed / 60:.1f} min). Times in seconds, best of {args.repeats} "
        f"after a warm-up; ratio = FlowKit / ours.")
    add("")
    add(f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['platform']}, Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f"; Snakemake executor plugins: {', '.join(info['plugins']) or 'none'}; BLAS: {info['blas'] or 'unknown'}; "
        f"thread variables: " + ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None)
        + (" (none set)" if not any(info["env"].values()) else "")
        + f"; load average at start {info['loadavg'][0]:.2f}, at end {info['loadavg_end'][0]:.2f}; "
        f"commit {info['commit']}; bytecode: {info.get('bytecode', 'as found')}"
        f"{' (PYTHONDONTWRITEBYTECODE set)' if os.environ.get('PYTHONDONTWRITEBYTECODE') else ''}.")
    add("")
    head = "| stage | " + " | ".join(f"ours {s['n']:,} | FlowKit {s['n']:,} | ratio" for s in sizes) + " | notes |"
    add(head)
    add("|---|" + "---:|---:|---:|" * len(sizes) + "---|")
    for i, r in enumerate(sizes[0]["rows"]):
        cells = []
        for s in sizes:
            x = s["rows"][i]
            cells.append(f"{_s(x['ours'])} | {_s(x['theirs'])} | {_ratio(x['ours'], x['theirs'])}")
        add(f"| {r['stage']} | " + " | ".join(cells) + f" | {r['note']} |")
    add("")
    add("Peak memory allocated during each of our in-process stages (`tracemalloc`, one call, its result "
        "included), MB:")
    add("")
    add("| stage | " + " | ".join(f"{s['n']:,}" for s in sizes) + " |")
    add("|---|" + "---:|" * len(sizes))
    for i, r in enumerate(sizes[0]["rows"]):
        if r.get("ours_peak_mb") is not None:
            add(f"| {r['stage']} | " + " | ".join(f"{s['rows'][i]['ours_peak_mb']:.0f}" for s in sizes) + " |")
    add("")
    add("Inside our gating hierarchy (each gate with the thresholds or fit it chooses), seconds:")
    add("")
    add("| gate | " + " | ".join(f"{s['n']:,}" for s in sizes) + " |")
    add("|---|" + "---:|" * len(sizes))
    for name in sizes[0]["per_gate"]:
        add(f"| {name} | " + " | ".join(f"{s['per_gate'].get(name, float('nan')):.4f}" for s in sizes) + " |")
    add("")
    add("Peak memory of the per-sample job as a subprocess (`/usr/bin/time -v`, maximum resident set size, "
        "largest of the repeats), MB:")
    add("")
    add(f"| events | raw matrix n x p x 4 | ours: job | ours: `import treganalysis.cli` | ours: (job − imports) / raw "
        f"| target 4 x raw + imports | ours: job on {_TINY:,} events | ours: (job − that job) / raw "
        "| FlowKit: job | FlowKit: `import flowkit` | FlowKit: (job − imports) / raw |")
    add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        raw = s["n"] * s["channels"] * 4 / 2**20
        base_o = startup["import_ours"]["max_rss_mb"] if startup else 0.0
        base_f = startup["import_flowkit"]["max_rss_mb"] if startup else 0.0
        tiny = startup["tiny_job"]["max_rss_mb"] if startup else 0.0
        o, f = s["ours_job"]["max_rss_mb"], s["flowkit_job"]["max_rss_mb"]
        add(f"| {s['n']:,} | {raw:.1f} | {o:.0f} | {base_o:.0f} | {(o - base_o) / raw:.1f} | {4 * raw + base_o:.0f} "
            f"| {tiny:.0f} | {(o - tiny) / raw:.1f} | {f:.0f} | {base_f:.0f} | {(f - base_f) / raw:.1f} |")
    add("")
    add("Our job with `--threads 2` (two steps' temporaries at once): " + "; ".join(
        f"{s['n']:,}: {s['ours_job_two']['max_rss_mb']:.0f} MB" for s in sizes) + ".")
    add("")
    add("Membership agreement with FlowKit's tree (share of events with the same membership; ours also removes "
        "QC events): " + "; ".join(f"{s['n']:,}: lowest {min(s['agreement'].values()):.5f} "
                                   f"({min(s['agreement'], key=s['agreement'].get)}), {s['qc_removed']} events removed by QC"
                                   for s in sizes) + ".")
    if startup:
        add("")
        oi, fi = startup["ours_imports"], startup["flowkit_imports"]
        add("Start-up (wall time, best of the repeats):")
        add("")
        add("| command | s | peak RSS MB |")
        add("|---|---:|---:|")
        for key, label in (("python_pass", "`python -c pass`"), ("version", "`python -m treganalysis --version`"),
                           ("import_ours", "`python -c 'import treganalysis.cli'`"),
                           ("import_flowkit", "`python -c 'import flowkit'`")):
            add(f"| {label} | {startup[key]['wall_s']:.3f} | {startup[key]['max_rss_mb']:.0f} |")
        add("")
        add(f"`python -X importtime -m treganalysis gate ...` ({sizes[-1]['n']:,} events): importing `treganalysis` "
            f"{oi['treganalysis']:.3f} s cumulative, then `treganalysis.cli` {oi['treganalysis.cli']:.3f} s more; "
            f"{oi['all']:.3f} s for all {oi['modules']} modules the job imports (lazy imports during the run included). "
            + "; ".join(f"{heavy} imported: {'yes (' + str(len(oi[heavy])) + ' modules)' if oi[heavy] else 'no'}"
                        for heavy in _HEAVY)
            + f". FlowKit's job: `flowkit` "
            f"{fi['flowkit']:.3f} s ({fi['all']:.3f} s, {fi['modules']} modules in all).")
        add("")
        add("Largest imports of the gate job (cumulative s; nesting level 0 and 1): "
            + ", ".join(f"{m} {t:.3f}" for m, t in oi["top"]) + ".")
    if cohort:
        add("")
        add("Cohort: the workflow's demo (simulate 24 samples of 100,000 events, gate each, cohort table, statistics, "
            f"report), `snakemake --cores N` in a fresh temporary folder, {len(cohort)} pair(s) of runs (1 core, then "
            "2):")
        add("")
        rules = sorted({r for pair in cohort for c in pair.values() for r in c["rules"]})
        add("| pair | cores | wall s | speed-up | gate phase s | " + " | ".join(f"{r} (jobs, sum s)" for r in rules) + " |")
        add("|---:|---:|---:|---:|---:|" + "---:|" * len(rules))
        speedups = []
        for number, pair in enumerate(cohort, 1):
            one = pair.get(1, {}).get("wall_s")
            for cores, c in sorted(pair.items()):
                speed = one / c["wall_s"] if one else None
                if cores == 2 and speed:
                    speedups.append(speed)
                add(f"| {number} | {cores} | {c['wall_s']:.1f} | {f'{speed:.2f}x' if speed else '–'} | "
                    f"{c['gate_phase_s'] or 0:.0f} | "
                    + " | ".join(f"{c['rules'][r]['jobs']}, {c['rules'][r]['sum_s']:.0f}" if r in c["rules"] else "–"
                                 for r in rules) + " |")
        if speedups:
            add("")
            add(f"Speed-up from 1 to 2 cores, pair by pair: {', '.join(f'{x:.2f}x' for x in speedups)}; median "
                f"**{statistics.median(speedups):.2f}x**.")
            best = {cores: min(pair[cores]["wall_s"] for pair in cohort if cores in pair) for cores in (1, 2)}
            add("")
            add(f"Best of {len(cohort)} against best of {len(cohort)} (the per-sample rows' reading: the machine's "
                f"drift only adds time): 1 core {best[1]:.1f} s, 2 cores {best[2]:.1f} s, "
                f"**{best[1] / best[2]:.2f}x**.")
        ones = sorted((pair[1] for pair in cohort if pair.get(1, {}).get("gate_phase_s")), key=lambda c: c["wall_s"])
        if ones:
            c = ones[(len(ones) - 1) // 2]
            serial = c["wall_s"] - c["gate_phase_s"]
            add("")
            others = ", ".join(r for r in rules if r not in ("all", "gate"))
            add(f"With one core (the middle run by wall time; the lower of the two middle ones for an even number), {serial:.0f} s of the {c['wall_s']:.0f} s are outside the gate phase "
                f"(Snakemake's start and end and one job each of {others}). If the gate phase halved perfectly on two "
                f"cores and nothing else ran at once, the speed-up would be "
                f"{c['wall_s'] / (serial + c['gate_phase_s'] / 2):.2f}x; whatever more two cores give comes from those "
                "jobs running beside each other (the two simulation jobs; sample_pages beside cohort and stats).")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="100000,1000000", help="comma-separated sizes (default 100000,1000000)")
    parser.add_argument("--repeats", "-k", type=int, default=3, help="timed repeats after a warm-up (default 3)")
    parser.add_argument("--out", help="write the markdown tables to this file")
    parser.add_argument("--cohort", type=int, nargs="?", const=1, default=0, metavar="PAIRS",
                        help="also run the workflow's 24-sample demo with --cores 1 and 2, PAIRS times (default 1; "
                        "about a minute a pair)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="set OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to N for the whole run "
                        "(in-process stages and every subprocess), as the workflow's gate rule does with N=1; "
                        "default: the environment as it is")
    parser.add_argument("--flowkit-job", nargs=3, metavar=("FILE", "OUT", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cohort < 0:
        parser.error("--cohort: the number of pairs must be 0 or more")
    if args.flowkit_job:  # the subprocess of FlowKit's per-sample job
        import warnings

        warnings.simplefilter("ignore")
        file, out, params = args.flowkit_job
        flowkit_job(file, out, json.loads(Path(params).read_text()))
        return 0

    if args.threads is not None:
        wanted = {k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        if any(os.environ.get(k) != v for k, v in wanted.items()):
            # the thread pools are sized when numpy loads: start again with the variables set
            os.environ.update(wanted)
            os.execv(sys.executable, [sys.executable, str(HERE), *(sys.argv[1:] if argv is None else argv)])

    import warnings

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    info = machine_info()
    info["bytecode"] = compile_package()
    print(f"{info['nproc']} CPUs ({info['cpu']}); load {info['loadavg'][0]:.2f}; BLAS {info['blas']}; "
          f"thread env {info['env']}", flush=True)
    sizes = [int(s.replace("_", "")) for s in args.events.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        folder = Path(tmp)
        results = [measure_size(n, args.repeats, folder) for n in sizes]
        startup = measure_startup(results[-1]["paths"]["file"], results[-1]["paths"]["params"], folder, args.repeats)
    cohort = measure_cohort(args.cohort) if args.cohort else None
    info["loadavg_end"] = os.getloadavg()
    text = render(results, startup, cohort, info, args, time.perf_counter() - start)
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
