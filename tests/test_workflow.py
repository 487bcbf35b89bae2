"""The Snakemake workflow, driven through its command line in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_snakemake

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("snakemake", path=str(Path(sys.executable).parent) + os.pathsep
                                             + os.environ.get("PATH", "")) is None,
                                reason="snakemake is not installed")


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, "--cores", "2", *args, config=config)


TINY = {"demo": {"subjects": 2, "visits": "il2-course", "events": 5000, "seed": 3}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    run = snakemake(workdir, config=TINY)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a Snakemake run or dry run: rule -> number of jobs."""
    lines = output[output.index("Job stats:"):].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_lists_the_jobs(tmp_path):
    run = snakemake(tmp_path, "-n", config=TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout + run.stderr
    assert "simulate_demo" in out and "cohort" in out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


def rule_graph(output: str) -> dict[str, set[str]]:
    """Snakemake's --rulegraph (dot): rule -> the rules it takes input from."""
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', output, flags=re.M))
    needs: dict[str, set[str]] = {name: set() for name in names.values()}
    for source, target in re.findall(r"^\s*(\d+) -> (\d+)", output, flags=re.M):
        needs[names[target]].add(names[source])
    return needs


def upstream(graph: dict[str, set[str]], rule: str) -> set[str]:
    seen, todo = set(), [rule]
    while todo:
        for parent in graph[todo.pop()] - seen:
            seen.add(parent)
            todo.append(parent)
    return seen


def test_sample_pages_are_drawn_beside_the_statistics(tmp_path):
    """The sample pages need the gating results only: their job runs beside cohort and stats; the
    stats job draws the cohort index, and the report job only copies the pages and the index into
    the site (no Python, no pandas, after the statistics)."""
    run = snakemake(tmp_path, "-n", "-p", config=TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout + run.stderr
    assert job_counts(out) == {"simulate_demo_1": 1, "simulate_demo_2": 1, "demo_tables": 1, "gate": 8, "cohort": 1,
                               "stats": 1, "sample_pages": 1, "report": 1, "all": 1}
    graph = rule_graph(snakemake(tmp_path, "--rulegraph", config=TINY).stdout)
    simulated = {"simulate_demo_1", "simulate_demo_2", "demo_tables"}
    assert upstream(graph, "sample_pages") == simulated | {"gate"}  # neither cohort nor stats
    assert upstream(graph, "stats") == simulated | {"gate"}  # the statistics join the table beside the cohort job
    assert graph["report"] == {"cohort", "sample_pages", "stats"}
    samples = [f"P0{s}_D{d}" for s in (1, 2) for d in (0, 5, 12, 33)]
    pages = [line for line in out.splitlines() if "treganalysis report" in line and "--out results/pages " in line]
    assert len(pages) == 1 and sorted(re.findall(r"--sample (\S+)", pages[0])) == sorted(samples)
    stats = [line for line in out.splitlines() if "treganalysis stats" in line]
    assert len(stats) == 1 and "--index results/pages/index.html --report-json" in stats[0]
    site = [line for line in out.splitlines() if "results/report/samples/" in line]
    assert len(site) == 1 and "treganalysis" not in site[0] and "python" not in site[0]
    assert sorted(re.findall(r"results/pages/samples/(\S+)\.html", site[0])) == sorted(samples)


def test_the_demo_simulated_in_parts_is_the_whole_cohort(finished, tmp_path):
    """The demo's simulation jobs (every other sample each, `simulate --sample`) and its tables job
    write the bytes of the whole cohort simulated by one `treganalysis simulate`, and each sample's
    truth row (truth/ID.json) beside them."""
    whole = tmp_path / "whole"
    run = subprocess.run([sys.executable, "-m", "treganalysis", "simulate", "--out", str(whole), "--subjects", "2",
                          "--visits", "il2-course", "--events", "5000", "--seed", "3"], cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    samples = [f"P0{s}_D{d}" for s in (1, 2) for d in (0, 5, 12, 33)]
    demo = finished / "resources" / "demo"
    files = sorted(p.relative_to(whole).as_posix() for p in whole.rglob("*") if p.is_file())
    assert len(files) == 8 + 8 + 5  # FCS files, labels, samples/truth/subjects/batches/classes tables
    made = sorted(p.relative_to(demo).as_posix() for p in demo.rglob("*") if p.is_file())
    assert made == sorted(files + [f"truth/{s}.json" for s in samples])
    for name in files:
        assert (whole / name).read_bytes() == (demo / name).read_bytes(), name
    logs = {p.name for p in (finished / "logs").iterdir()}
    assert {"simulate_demo_1.log", "simulate_demo_2.log", "demo_tables.log"} <= logs


def test_demo_run_writes_the_cohort_table(finished):
    table = pd.read_csv(finished / "results" / "cohort" / "populations.tsv", sep="\t")
    assert table["sample_id"].nunique() == 8  # 2 subjects x 4 visits
    assert {"subject", "timepoint", "day", "population", "count", "pct_parent", "pct_cd4"} <= set(table.columns)
    treg = table[table["population"] == "treg"]
    assert len(treg) == 8 and treg["pct_cd4"].between(0.5, 30).all()
    for sample in table["sample_id"].unique():
        folder = finished / "results" / "samples" / sample
        assert (folder / "populations.tsv").is_file() and (folder / "gates.json").is_file()
        assert (finished / "logs" / "gate" / f"{sample}.log").is_file()
    assert set(table["qc_status"]) <= {"pass", "warn"}  # a clean simulated cohort: no QC failure


def test_report_site_and_snakemake_report_zip(finished):
    import zipfile

    site = finished / "results" / "report"
    pages = sorted(p.stem for p in (site / "samples").glob("*.html"))
    table = pd.read_csv(finished / "results" / "cohort" / "populations.tsv", sep="\t")
    assert pages == sorted(table["sample_id"].unique())
    assert (site / "plotly.min.js").is_file() and not list(site.glob("samples/*.js"))
    index = (site / "index.html").read_text()
    assert all(f'href="samples/{p}.html"' in index for p in pages)
    # the statistics tables, and the cohort page built on them
    long = pd.read_csv(finished / "results" / "cohort" / "longitudinal.tsv", sep="\t")
    tests = pd.read_csv(finished / "results" / "cohort" / "tests.tsv", sep="\t")
    calls = pd.read_csv(finished / "results" / "cohort" / "responders.tsv", sep="\t")
    assert set(long[long["population"] == "treg"]["subject"]) == {"P01", "P02"}
    assert {"wilcoxon"} <= set(tests["test"]) and sorted(calls["subject"]) == ["P01", "P02"]
    assert "Treg expansion" in index and "IL-2 doses" in index  # the demo marks its dosing days
    for page in pages:  # drawn by the pages job, copied into the site
        drawn = finished / "results" / "pages" / "samples" / f"{page}.html"
        assert (site / "samples" / f"{page}.html").read_bytes() == drawn.read_bytes()
    # the index drawn by the stats job, and the script written with the pages, copied
    for name in ("index.html", "plotly.min.js"):
        assert (site / name).read_bytes() == (finished / "results" / "pages" / name).read_bytes()
    run = snakemake(finished, "--report", "report.zip", config=TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    names = zipfile.ZipFile(finished / "report.zip").namelist()
    assert any(n.endswith("/index.html") for n in names) and any(n.endswith("/plotly.min.js") for n in names)
    assert sum(n.endswith(".html") and "/samples/" in n for n in names) == len(pages)


def test_the_jobs_package_is_compiled_once_for_them(tmp_path):
    """With PYTHONDONTWRITEBYTECODE set no job writes the package's bytecode cache, so every job
    compiled it again: the workflow compiles it beside the sources when it starts."""
    import importlib.util

    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("workflow", "config", "profiles", "treganalysis"):
        shutil.copytree(REPO / name, checkout / name, ignore=ignore)
    shutil.copy(REPO / "Snakefile", checkout / "Snakefile")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2"], cwd=checkout,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sources = sorted((checkout / "treganalysis").rglob("*.py"))
    assert len(sources) > 20
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.is_file(), cached
        assert cached.stat().st_mtime >= source.stat().st_mtime


# Every `import pandas` statement run while our code is on the stack (the Snakefile, its rules
# files, the package: TA_OURS) is written to TA_PANDAS_LOG: a plugin that imported pandas first would hide
# a later import of ours from the import system itself, not from this hook.
_PANDAS_HOOK = """
import builtins, os, sys
_real, _log = builtins.__import__, os.environ["TA_PANDAS_LOG"]
_ours = tuple(os.environ["TA_OURS"].split(os.pathsep))
def _import(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "pandas" or name.startswith("pandas."):
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_filename.startswith(_ours):
            frame = frame.f_back
        if frame is not None:
            with open(_log, "a") as log:
                log.write(f"{frame.f_code.co_filename}:{frame.f_lineno}\\n")
    return _real(name, globals, locals, fromlist, level)
builtins.__import__ = _import
"""


@pytest.mark.parametrize("sheet", [False, True], ids=["demo", "sample sheet"])
def test_snakemake_plans_the_demo_without_pandas(tmp_path, monkeypatch, sheet):
    """Snakemake's own process imports no pandas for the demo (0.3-0.4 s of every command's
    start, docs/performance.md); a sample sheet is read with it. Executor plugins are not ours:
    the SLURM one imports pandas itself, which is why it is an extra of its own."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_PANDAS_HOOK)
    log = tmp_path / "pandas.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(hook), os.environ.get("PYTHONPATH")))))
    # our code only: the Snakefile, its rules and the package (a virtual environment may live in
    # the repository, as CI's .venv does, and pandas' own modules import each other)
    ours = [str(REPO / "Snakefile"), str(REPO / "workflow") + os.sep, str(REPO / "treganalysis") + os.sep]
    monkeypatch.setenv("TA_OURS", os.pathsep.join(ours))
    monkeypatch.setenv("TA_PANDAS_LOG", str(log))
    config = dict(TINY)
    if sheet:
        (tmp_path / "a.fcs").write_bytes(b"")  # a dry run reads no file
        (tmp_path / "samples.tsv").write_text("sample_id\tsubject\ttimepoint\tday\tfcs\ns1\tP1\tD0\t0\ta.fcs\n")
        config["samples"] = str(tmp_path / "samples.tsv")
    run = snakemake(tmp_path, "-n", config=config)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = log.read_text().splitlines() if log.exists() else []
    if sheet:
        assert any("sheet.py" in line for line in imported), imported  # the hook sees our imports
    else:
        assert imported == []


def test_an_empty_role_is_a_patient_for_the_workflow_too(tmp_path):
    """load_sample_sheet takes an empty role (a patient, for the statistics): the row schema
    that Snakemake's validate checks the sheet with does too."""
    (tmp_path / "a.fcs").write_bytes(b"")  # a dry run reads no file
    (tmp_path / "samples.tsv").write_text("sample_id\tsubject\ttimepoint\tday\tfcs\trole\n"
                                          "s1\tP1\tD0\t0\ta.fcs\t\ns2\tH1\tD0\t0\ta.fcs\thealthy\n")
    run = snakemake(tmp_path, "-n", config={"samples": str(tmp_path / "samples.tsv")})
    assert run.returncode == 0, run.stderr[-2000:]


def test_rerun_executes_nothing(finished):
    run = snakemake(finished, config=TINY)
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def test_user_sample_sheet_with_relative_paths(finished, tmp_path):
    # a lab's own sheet: FCS paths relative to the sheet's folder
    data = tmp_path / "data"
    (data / "fcs").mkdir(parents=True)
    rows = []
    for day in (0, 5):
        name = f"P01_D{day}.fcs"
        shutil.copy(finished / "resources" / "demo" / "fcs" / name, data / "fcs" / name)
        rows.append({"sample_id": f"pt1_d{day}", "subject": "pt1", "timepoint": f"D{day}", "day": day,
                     "fcs": f"fcs/{name}", "batch": "A"})
    pd.DataFrame(rows).to_csv(data / "samples.tsv", sep="\t", index=False)
    workdir = tmp_path / "run"
    workdir.mkdir()
    run = snakemake(workdir, config={"samples": str(data / "samples.tsv")})
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(workdir / "results" / "cohort" / "populations.tsv", sep="\t")
    assert sorted(table["sample_id"].unique()) == ["pt1_d0", "pt1_d5"] and (table["batch"] == "A").all()


def test_bad_sample_sheet_lists_every_problem_before_any_job(tmp_path):
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample_id\tsubject\ttimepoint\tday\tfcs\trole\n"
                     "A\tP1\tD0\t0\tmissing.fcs\tpatient\n"
                     "A\tP1\tD5\tfive\tmissing.fcs\tdoctor\n")
    run = snakemake(tmp_path, config={"samples": str(sheet)})
    assert run.returncode != 0
    err = run.stdout + run.stderr
    for problem in ("duplicate sample_id 'A'", "line 3: day 'five' is not a number", "unknown role 'doctor'",
                    "line 2: FCS file not found: missing.fcs"):
        assert problem in err, err[-2000:]
    assert not (tmp_path / "results").exists()


def test_missing_column_and_bad_config(tmp_path):
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample_id\tsubject\tfcs\nA\tP1\tx.fcs\n")
    run = snakemake(tmp_path, "-n", config={"samples": str(sheet)})
    assert run.returncode != 0 and "missing columns timepoint, day" in run.stdout + run.stderr
    run = snakemake(tmp_path, "-n", config={"demo": {"subjects": 0, "visits": "weekly"}, "pool_by": "visit"})
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "3 problems in the configuration" in out
    assert "demo.subjects" in out and "demo.visits" in out and "pool_by" in out
    assert not (tmp_path / "results").exists()


def test_lint_is_clean(tmp_path):
    run = snakemake(tmp_path, "--lint", config=TINY)
    assert run.returncode == 0
    assert "Congratulations" in run.stdout + run.stderr


def test_the_profiles_name_rules_of_the_workflow(tmp_path):
    """A rule renamed in workflow/rules/ is renamed in the SLURM profile's resources and groups too."""
    run = snakemake(tmp_path, "--list-rules", config=TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    rules = set(run.stdout.split())
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    named = set(profile["set-resources"]) | set(profile["set-threads"]) | set(profile["groups"])
    assert named <= rules, named - rules
    assert {"simulate_demo_1", "simulate_demo_2", "cohort", "stats", "sample_pages", "report"} <= set(
        profile["set-resources"])
    # the short cohort-level steps after the gating are one cluster job
    assert {profile["groups"].get(r) for r in ("cohort", "stats", "sample_pages", "report")} == {"cohort-summary"}


def test_pooled_gating_by_subject(finished, tmp_path):
    workdir = tmp_path / "pooled"
    workdir.mkdir()
    shutil.copytree(finished / "resources", workdir / "resources")  # the same simulated files
    run = snakemake(workdir, config={**TINY, "pool_by": "subject"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in (workdir / "results" / "pooled").iterdir()) == ["P01.json", "P02.json"]
    cuts = {}
    for day in (0, 5, 12, 33):
        gates = json.loads((workdir / "results" / "samples" / f"P01_D{day}" / "gates.json").read_text())
        assert gates["provenance"]["pooled"]["group"] == "P01"
        cuts[day] = {g["threshold"]: g["value"] for g in gates["gates"] if "threshold" in g and "on" in g}
    assert all(c == cuts[0] for c in cuts.values())  # one set of thresholds for the subject's visits
    bad = snakemake(tmp_path, "-n", config={**TINY, "pool_by": "visit"})
    assert bad.returncode != 0 and "pool_by" in bad.stdout + bad.stderr


def test_a_corrupt_file_fails_alone_and_is_listed(finished, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = finished / "resources" / "demo" / "fcs" / "P01_D0.fcs"
    shutil.copy(good, data / "good.fcs")
    (data / "bad.fcs").write_bytes(good.read_bytes()[:5000])  # truncated transfer
    pd.DataFrame([
        {"sample_id": "good", "subject": "S1", "timepoint": "D0", "day": 0, "fcs": "good.fcs"},
        {"sample_id": "bad", "subject": "S1", "timepoint": "D5", "day": 5, "fcs": "bad.fcs"},
    ]).to_csv(data / "samples.tsv", sep="\t", index=False)
    workdir = tmp_path / "run"
    workdir.mkdir()
    run = snakemake(workdir, "--keep-going", config={"samples": str(data / "samples.tsv")})
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(workdir / "results" / "cohort" / "populations.tsv", sep="\t")
    bad = table[table["sample_id"] == "bad"]
    assert len(bad) == 1 and bad["status"].iloc[0] == "failed" and "truncated" in bad["reason"].iloc[0]
    assert (table[table["sample_id"] == "good"]["status"] == "ok").sum() >= 6
    # the run says which sample failed, and why (the cohort table read back in Snakemake's process)
    said = run.stdout + run.stderr
    assert "treganalysis: 1 sample(s) could not be gated" in said and re.search(r"^  bad: .*truncated", said, re.M)
    page = (workdir / "results" / "report" / "samples" / "bad.html").read_text()
    assert "failed" in page and "truncated" in page  # its QC page says why
    # pooled by subject, the corrupt file is left out of its group and still fails alone
    pooled = tmp_path / "pooled"
    pooled.mkdir()
    run = snakemake(pooled, "--keep-going", config={"samples": str(data / "samples.tsv"), "pool_by": "subject"})
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(pooled / "results" / "cohort" / "populations.tsv", sep="\t")
    assert table[table["sample_id"] == "bad"]["status"].tolist() == ["failed"]
    assert (table[table["sample_id"] == "good"]["status"] == "ok").sum() >= 6


def _requirement_names(requirements) -> set[str]:
    import re

    return {re.split(r"[ <>=!~\[;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_conda_environment_holds_the_package_dependencies():
    """--sdm conda: the rules' environment provides every run-time dependency of the package."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = _requirement_names(project["dependencies"]) - {"snakemake"}  # the engine runs outside the jobs
    env = yaml.safe_load((REPO / "workflow" / "envs" / "treganalysis.yaml").read_text())
    listed = [d for d in env["dependencies"] if isinstance(d, str)]
    listed += [p for d in env["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    assert needed <= _requirement_names(listed), needed - _requirement_names(listed)
    assert not any(p.startswith(("-e", ".", "/")) for p in listed)  # no path that depends on where conda copies it


def test_rules_run_the_package_beside_the_snakefile(tmp_path):
    """Rules call `python -m treganalysis` (no installed console script, so a conda env needs no package)."""
    run = snakemake(tmp_path, "-n", "-p", config=TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    commands = [line for line in run.stdout.splitlines() if "treganalysis" in line and "--out" in line]
    assert commands and all("python -m treganalysis " in line for line in commands)


@pytest.mark.skipif(shutil.which("conda") is None, reason="conda is not installed (and needs a reachable channel)")
def test_conda_deployment_runs_the_tiny_cohort(tmp_path):
    run = snakemake(tmp_path, "--sdm", "conda", config=TINY)
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "cohort" / "populations.tsv", sep="\t")
    assert table["sample_id"].nunique() == 8


def test_provenance_and_a_replaced_input_is_gated_again(finished, tmp_path):
    prov = pd.read_csv(finished / "results" / "cohort" / "provenance.tsv", sep="\t")
    assert len(prov) == 8 and not prov["input_changed"].any()
    assert prov["input_sha256"].str.fullmatch(r"[0-9a-f]{64}").all() and prov["config_sha256"].nunique() == 1
    assert {"python", "numpy", "pyyaml", "treganalysis"} <= set(prov.columns)  # what a gating job imports
    # a copy of the cohort in which one file is replaced by another, with an older date
    workdir = tmp_path / "copy"
    shutil.copytree(finished, workdir, symlinks=True, ignore=shutil.ignore_patterns("report.zip"))
    fcs = workdir / "resources" / "demo" / "fcs"
    shutil.copy2(fcs / "P02_D5.fcs", fcs / "P01_D0.fcs")
    os.utime(fcs / "P01_D0.fcs", (1_577_836_800, 1_577_836_800))  # 2020-01-01: older than its results
    dry = snakemake(workdir, "-n", config=TINY)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "sample=P01_D0" in dry.stdout and "sample=P02_D5" not in dry.stdout


def test_a_killed_run_leaves_nothing_trusted_and_resumes(tmp_path):
    import signal
    import time

    from conftest import REPO as repo

    settings = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    settings.update(TINY)
    (tmp_path / "test-config.yaml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(tmp_path / "test-config.yaml"), "--cores", "2"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                           start_new_session=True)
    samples = tmp_path / "results" / "samples"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(samples.glob("*/populations.tsv"))) < 2:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # a power cut in the middle of the gating jobs
    run.wait()
    assert not (tmp_path / "results" / "cohort" / "populations.tsv").exists()
    for table in samples.glob("*/populations.tsv"):  # whatever is there is whole (written atomically)
        assert len(pd.read_csv(table, sep="\t")) >= 1
    # after kill -9 Snakemake's lock stays (it cannot tell a dead run from a running one): unlock,
    # then the same command makes what is missing or was unfinished, and trusts nothing half-made
    assert subprocess.run([*command, "--unlock"], capture_output=True, env=env).returncode == 0
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Using workflow specific profile profiles/default" in rerun.stdout + rerun.stderr or \
        "profiles/default" in rerun.stdout + rerun.stderr
    table = pd.read_csv(tmp_path / "results" / "cohort" / "populations.tsv", sep="\t")
    assert table["sample_id"].nunique() == 8 and (table["status"] == "ok").all()
