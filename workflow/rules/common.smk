# Configuration and sample sheet: checked before any job runs, every problem listed at once.
import compileall
import gc
import json
import os
import py_compile
import shlex
import sys
import threading
import time

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from treganalysis._files import read_records_tsv
from treganalysis.errors import TregAnalysisError
from treganalysis.settings import config_problems
from treganalysis.sheet import SAFE_ID, load_sample_sheet
from treganalysis.simulate import PRESETS, cohort_plan


_problems = config_problems(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
if _problems:
    raise WorkflowError(f"{len(_problems)} problem{'s' if len(_problems) > 1 else ''} in the configuration "
                        "(config/config.yaml and --config):\n  - " + "\n  - ".join(_problems))
validate(config, "../schemas/config.schema.yaml", set_default=True)

# One dict per sample. The demo's are planned without pandas, whose import (0.3-0.4 s) would add to
# every snakemake command's start; a sample sheet is read and checked with it (load_sample_sheet
# imports it when called).
DEMO = config["samples"] == "demo"
if DEMO:
    SHEET = "resources/demo/samples.tsv"
    _rows = cohort_plan(config["demo"]["subjects"], config["demo"]["visits"], as_frame=False)
    for _row in _rows:
        _row["fcs"] = f"resources/demo/fcs/{_row['sample_id']}.fcs"
else:
    SHEET = config["samples"]
    try:
        _sheet = load_sample_sheet(SHEET)
    except TregAnalysisError as error:
        raise WorkflowError(str(error)) from None
    validate(_sheet, "../schemas/samples.schema.yaml")
    _rows = _sheet.to_dict("records")
SAMPLES = [row["sample_id"] for row in _rows]
FCS = {row["sample_id"]: row["fcs"] for row in _rows}

# The demo is simulated by DEMO_PARTS jobs (workflow/rules/demo.smk), every DEMO_PARTS-th sample each.
DEMO_PARTS = 2
# the cohort of `treganalysis simulate` (the same in every part, so the parts are one cohort)
DEMO_ARGS = " ".join(f"--{k} {shlex.quote(str(config['demo'][k]))}" for k in ("subjects", "visits", "events", "seed"))


def demo_part(part):
    """The demo samples that simulation job ``part`` (1, 2, ...) writes."""
    return SAMPLES[part - 1 :: DEMO_PARTS] if DEMO else []


# Pooled gating: each sample's group (subject or batch), and each group's samples.
POOL_BY = config["pool_by"]
if POOL_BY != "none":
    if any(str(row.get(POOL_BY, "")).strip() == "" for row in _rows):
        raise WorkflowError(f"pool_by: {POOL_BY} needs a {POOL_BY} value for every sample of {SHEET}")
    GROUP = {row["sample_id"]: str(row[POOL_BY]) for row in _rows}
    _unsafe = sorted({g for g in GROUP.values() if not SAFE_ID.fullmatch(g)})
    if _unsafe:
        raise WorkflowError(f"pool_by: {POOL_BY}: group names are used in file names and may hold only letters, "
                            f"digits, '.', '_' and '-': {', '.join(repr(g) for g in _unsafe)}")
    MEMBERS = {g: [s for s in SAMPLES if GROUP[s] == g] for g in sorted(set(GROUP.values()))}

# The jobs run `python -m treganalysis`: the package beside this Snakefile (first on PYTHONPATH),
# with the interpreter that runs Snakemake first on PATH, since it has the package's dependencies
# (this file imports the package) even when its environment was not activated. Under --sdm conda
# the environment's own python comes first instead; it holds the dependencies, not the package.
# Jobs inherit this environment; a job run elsewhere (SLURM) parses this file again. Neither
# variable is required of the user, so no envvars directive.
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p),
                  PATH=os.pathsep.join(p for p in (os.path.dirname(sys.executable), os.environ.get("PATH")) if p))

# Those jobs' package compiled to bytecode once, beside its sources (git-ignored), as pip compiles
# what it installs: where PYTHONDONTWRITEBYTECODE is set (containers, CI) no job writes the cache,
# and every job compiled the package again (0.17 s of a 100k-event gate job's 0.45 s). Up to date,
# this compares timestamps only (3 ms; timestamps also under SOURCE_DATE_EPOCH, whose hash-based
# files this check would never find up to date); a read-only checkout is left as it is.
compileall.compile_dir(os.path.join(workflow.basedir, "treganalysis"), quiet=2,
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)

# The statistics' and the cohort page's settings, one JSON argument each; the demo marks its doses.
STATS_SETTINGS = json.dumps(config["stats"])
_report = dict(config["report"])
if DEMO and not _report["dosing_days"]:
    _report["dosing_days"] = PRESETS[config["demo"]["visits"]]["doses"]
REPORT_SETTINGS = json.dumps(_report)

# What treganalysis gate reads from the configuration, passed to each job as one JSON argument.
GATING_SETTINGS = json.dumps({k: config[k] for k in ("panel", "compensation", "qc", "transform", "gating")})


def fcs_file(wildcards):
    """The FCS file of a sample: the demo's simulated file, or the sheet's."""
    return FCS[wildcards.sample]


def input_stamp(wildcards):
    """Size and modification time of a sample's FCS file ("" before the demo simulated it)."""
    try:
        info = os.stat(FCS[wildcards.sample])
    except OSError:
        return ""
    return f"{info.st_size}:{info.st_mtime_ns}"


def pooled_gates(wildcards):
    """The sample's group's pooled gates, when pool_by is set."""
    return [f"results/pooled/{GROUP[wildcards.sample]}.json"] if POOL_BY != "none" else []


_STARTED = time.time()


def failed_samples():
    """(sample, reason) of the samples recorded as failed in the cohort table, when this run
    wrote it (a table left by an earlier run is not reported again)."""
    path = "results/cohort/populations.tsv"
    if not os.path.exists(path) or os.path.getmtime(path) < _STARTED:
        return []
    # without pandas, which the demo's Snakemake process has not imported (above); a failed
    # sample has one row, with the reason
    try:
        columns, rows = read_records_tsv(path)
    except (OSError, ValueError):
        return []
    if not {"sample_id", "status", "reason"} <= set(columns):
        return []
    return [(row["sample_id"], row["reason"]) for row in rows if row["status"] == "failed"]


def release_exit():
    """Let Snakemake's process end as soon as it is done (from onsuccess and onerror).

    Two waits at its exit have nothing left to do: the scheduler's last re-evaluation timer
    (`--max-jobs-per-timespan`, 1 s by default; a non-daemon thread the interpreter joins, though
    the scheduler it would wake has returned) and the interpreter's final garbage collections over
    every module Snakemake imported (0.4-0.5 s), skipped by freezing them when Snakemake is the
    process itself. Together about 1.5 s of every run, on any number of cores (docs/performance.md).
    """
    for thread in threading.enumerate():
        # Snakemake's own timers only (a lambda of its scheduler), not a caller's when run in-process
        if isinstance(thread, threading.Timer) and getattr(thread.function, "__module__", "").startswith("snakemake."):
            thread.cancel()
    # only when Snakemake is the process (`snakemake`, `python -m snakemake`): a program running it
    # through the API goes on, and frozen objects are never collected
    program = os.path.normpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(program) == "snakemake" or program.endswith(os.path.join("snakemake", "__main__.py")):
        gc.freeze()
