"""The workflow through Snakemake's SLURM executor plugin on a real single-node cluster.

It needs Debian's slurm-wlm and munge (the cluster is started by `tests/slurm_cluster.py`) and the
executor plugin (the package's `slurm` extra), all installed by `.ci/run`; without them the module
is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_snakemake
from slurm_cluster import SlurmCluster, missing

REPO = Path(__file__).resolve().parent.parent
_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
_missing = missing()
try:
    import snakemake_executor_plugin_slurm  # noqa: F401
except ImportError:
    _missing.append("the Python package snakemake-executor-plugin-slurm (pip install -e \".[slurm]\")")

if _missing and not _ci:
    pytest.skip(f"no SLURM cluster can be started here: {', '.join(_missing)}", allow_module_level=True)

# a small demo cohort: every rule of the workflow runs, in a few minutes on 2 cores
DEMO = {"demo": {"subjects": 2, "visits": "il2-course", "events": 10000, "seed": 3}}
SLURM = ["--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"), "--slurm-status-command", "squeue",
         "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
         "--latency-wait", "10", "--jobs", "8"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if _missing:
        pytest.fail(f"CI must run the SLURM tests, but: {', '.join(_missing)} (see .ci/run)")
    running = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield running
    running.stop()


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, config=config, timeout=900)


TABLES = ["populations.tsv", "longitudinal.tsv", "tests.tsv", "responders.tsv"]


def _table(workdir: Path, name: str) -> pd.DataFrame:
    table = pd.read_csv(workdir / "results" / "cohort" / name, sep="\t")
    return table.drop(columns=["fcs"], errors="ignore")  # the FCS path names the run's folder


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("on-slurm")
    run = snakemake(workdir, *SLURM, "--slurm-keep-successful-logs", config=DEMO)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return workdir, run


def test_the_demo_through_slurm_gives_the_local_run_tables(slurm_run, tmp_path):
    workdir, run = slurm_run
    out = run.stdout + run.stderr
    # 8 samples, the simulation (two halves and the tables), and cohort + stats + pages + report as one
    # group job (the profile's groups:)
    assert out.count("has been submitted with SLURM jobid") == 8 + 3 + 1
    local = tmp_path / "local"
    local.mkdir()
    run = snakemake(local, "--cores", "2", config=DEMO)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in TABLES:
        pd.testing.assert_frame_equal(_table(workdir, name), _table(local, name), check_exact=False, rtol=1e-12,
                                      obj=name)
    assert sorted(p.name for p in (workdir / "results" / "report" / "samples").iterdir()) == \
        sorted(p.name for p in (local / "results" / "report" / "samples").iterdir())


def test_gating_jobs_ask_memory_and_runtime_from_their_file(slurm_run):
    workdir, _ = slurm_run
    logs = sorted((workdir / ".snakemake" / "slurm_logs" / "rule_gate").glob("*/*.log"))
    assert len(logs) == 8
    for log in logs:
        sample = log.parent.name
        size_mb = (workdir / "resources" / "demo" / "fcs" / f"{sample}.fcs").stat().st_size / 2**20
        resources = re.search(r"resources: (.*)", log.read_text()).group(1)
        assert f"mem_mb={600 + 8 * int(size_mb)}," in resources + ",", resources
        assert f"runtime={10 + int(size_mb) // 10}" in resources, resources
        assert "cpus_per_task=1" in resources or "_cores=1" in resources, resources


def test_a_job_killed_for_memory_is_reported_and_the_rest_finish(cluster, tmp_path):
    # a lab's sheet with one file far larger than the others, and a memory request (900 MB for the job:
    # snakemake in the job and the gating, a few hundred MB for 20,000 events) too small for it: gating
    # 8 million events holds the raw and compensated events (900 MB) for seconds, about 1.5 GB at its peak
    # (SLURM samples the job's memory once a second, so the excess must last)
    from treganalysis.cli import main as treganalysis

    data = tmp_path / "data"
    assert treganalysis(["simulate", "--out", str(data / "small"), "--subjects", "1", "--events", "20000",
                         "--seed", "2"]) == 0
    big_cohort = ["simulate", "--out", str(data / "big"), "--subjects", "1", "--events", "8000000", "--seed", "2"]
    assert treganalysis([*big_cohort, "--tables", "sheet"]) == 0  # the sheet, and of the files only the one used
    assert treganalysis([*big_cohort, "--sample", "P01_D0"]) == 0
    sheet = pd.read_csv(data / "small" / "samples.tsv", sep="\t")
    sheet["fcs"] = [str(data / "small" / f) for f in sheet["fcs"]]
    big = pd.read_csv(data / "big" / "samples.tsv", sep="\t").iloc[[0]].assign(
        sample_id="BIG_D0", subject="P02", fcs=str(data / "big" / "fcs" / "P01_D0.fcs"))
    pd.concat([sheet, big]).to_csv(data / "samples.tsv", sep="\t", index=False)
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = {"samples": str(data / "samples.tsv")}
    run = snakemake(workdir, *SLURM, "--keep-going", "--retries", "0", "--set-resources", "gate:mem_mb=900",
                    config=config)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Error in rule gate" in out and "sample=BIG_D0" in out
    assert ".snakemake/slurm_logs/rule_gate/BIG_D0/" in out  # the path of its SLURM log
    for sample in sheet["sample_id"]:  # --keep-going: every other sample was gated
        assert (workdir / "results" / "samples" / sample / "populations.tsv").is_file()
    assert not (workdir / "results" / "samples" / "BIG_D0" / "populations.tsv").exists()
    # a rerun (with the memory the file needs) would submit only what is missing: the big sample's
    # gating and the cohort steps
    dry = snakemake(workdir, *SLURM, "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr[-2000:]
    counts = dict(re.findall(r"^(gate|cohort|stats|report)\s+(\d+)\s*$", dry.stdout, flags=re.M))
    assert counts == {"gate": "1", "cohort": "1", "stats": "1", "report": "1"}, dry.stdout[-3000:]
    assert "sample=BIG_D0" in dry.stdout and "sample=P01_D0" not in dry.stdout
