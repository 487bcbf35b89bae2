"""The ``treganalysis`` command: ``--version`` and ``inspect FILE...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import treganalysis
from treganalysis.cli import main
from treganalysis.fcs import write_fcs
from treganalysis.sample import Spillover

from conftest import DATA, shared

COMP_EXAMPLE_CHANNELS = [
    "FSC-A", "FSC-W", "SSC-A", "Ax488-A", "PE-A", "PE-TR-A", "PerCP-Cy55-A", "PE-Cy7-A", "Ax647-A",
    "Ax700-A", "Ax750-A", "PacBlu-A", "Qdot525-A", "PacOrange-A", "Qdot605-A", "Qdot655-A",
    "Qdot705-A", "Time",
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _command() -> list[str]:
    script = Path(sys.executable).parent / ("treganalysis.exe" if os.name == "nt" else "treganalysis")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "treganalysis.cli"]


def run_process(*argv: str, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "treganalysis.cli"] if module else _command()
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=60)


@pytest.fixture
def good_fcs(tmp_path) -> Path:
    events = np.arange(40, dtype=np.float32).reshape(10, 4)
    return write_fcs(
        tmp_path / "good.fcs", events, ["FSC-A", "FL1-A", "FL2-A", "Time"], ["", "CD4 FITC", "CD25 PE", ""],
        ranges=[262144, 1024, 4096, 100000], keywords={"$CYT": "TestCyt"},
    )


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    """Four broken inputs, keyed by what is wrong with them."""
    missing = tmp_path / "does_not_exist.fcs"
    garbage = tmp_path / "garbage.fcs"
    garbage.write_bytes(b"\x00\x13\xffgarbage")
    assert garbage.stat().st_size == 10
    full = write_fcs(
        tmp_path / "full.fcs", np.ones((50, 3), np.float32), ["FL1-A", "FL2-A", "FL3-A"], ["CD4", "CD8", "CD3"]
    )
    truncated = tmp_path / "truncated.fcs"
    truncated.write_bytes(full.read_bytes()[:-64])
    text = tmp_path / "notes.fcs"
    text.write_text("sample,cd4,cd8\n" + "tube 1,12.5,3.3\n" * 20)
    return {"missing": missing, "garbage": garbage, "truncated": truncated, "text": text}


# -- --version / usage ------------------------------------------------------------------------------


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.strip() == f"treganalysis {treganalysis.__version__}"
    assert treganalysis.__version__ not in ("", "0+unknown")


def test_version_subprocess():
    proc = run_process("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"treganalysis {treganalysis.__version__}"
    assert "Traceback" not in proc.stderr


def test_inspect_without_files_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["inspect"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage" in err.lower()
    assert "FILE" in err


def test_no_command_prints_help_and_fails(capsys):
    code, out, _ = run(capsys)
    assert code == 2
    assert "inspect" in out


def test_process_entry_exits_with_the_status_and_freezes_what_is_left(capsys, monkeypatch):
    """`treganalysis` and `python -m treganalysis` exit with main's status, after freezing the
    remaining objects out of the interpreter's final collections (docs/performance.md)."""
    import gc

    from treganalysis import cli

    monkeypatch.setattr(sys, "argv", ["treganalysis"])
    frozen = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.run()
        assert exit_.value.code == 2
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
    assert "inspect" in capsys.readouterr().out


# -- inspect: good files ----------------------------------------------------------------------------


def test_inspect_comp_example(capsys):
    path = DATA / "test_comp_example.fcs"
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 0, err
    assert err == ""
    assert str(path) in out
    lines = out.splitlines()
    version_line = next(line for line in lines if "FCS version" in line)
    assert version_line.split()[-1] == "3.0"
    events_line = next(line for line in lines if "events" in line)
    assert "10,703" in events_line
    assert "LSRII" in out
    # every $PnN appears as the first cell after the row number of the channel table
    rows = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            rows[int(parts[0])] = parts[1]
    assert [rows[j] for j in range(1, len(COMP_EXAMPLE_CHANNELS) + 1)] == COMP_EXAMPLE_CHANNELS
    spill = [line for line in lines if line.split()[:1] == ["spillover"]]
    assert len(spill) == 1
    assert "identity" in spill[0]
    assert "14" in spill[0]
    assert "cd3=PE-Cy7-A" in out and "cd4=PacBlu-A" in out


def test_inspect_shows_ranges_and_resolved_markers(capsys, good_fcs):
    code, out, err = run(capsys, "inspect", str(good_fcs))
    assert code == 0, err
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["2", "FL1-A"])
    assert row == ["2", "FL1-A", "CD4", "FITC", "1024", "cd4"]
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["3", "FL2-A"])
    assert row == ["3", "FL2-A", "CD25", "PE", "4096", "cd25"]
    assert "TestCyt" in out
    assert "none in the file" in out  # no spillover keyword
    assert "3.1" in out
    events_line = next(line for line in out.splitlines() if "events" in line)
    assert events_line.split()[-1] == "10"


def test_inspect_spillover_present_not_identity(capsys, tmp_path):
    spill = Spillover(np.array([[1.0, 0.2], [0.05, 1.0]]), ("FL1-A", "FL2-A"))
    path = write_fcs(tmp_path / "spill.fcs", np.zeros((4, 2), np.float32), ["FL1-A", "FL2-A"],
                     ["CD4 FITC", "CD25 PE"], spillover=spill)
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.split()[:1] == ["spillover"])
    assert "$SPILLOVER" in line and "2 channels" in line
    assert "identity" not in line


def test_inspect_flowkit_100715_markers(capsys):
    path = shared("flowkit", "100715.fcs")
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 0, err
    assert "65,016" in out
    found = next(line for line in out.splitlines() if "markers found" in line)
    for pair in ("cd4=V655-A", "cd3=R780-A", "cd8=V800-A", "cd127=G560-A"):
        assert pair in found
    absent = next(line for line in out.splitlines() if "markers absent" in line)
    assert "foxp3" in absent and "cd25" in absent
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["9", "V655-A"])
    assert row[-1] == "cd4"


def test_inspect_data1_reports_ambiguous_cd8(capsys):
    code, out, err = run(capsys, "inspect", str(DATA / "data1.fcs"))
    assert code == 0, err
    assert "cd4=FL1-H" in out and "cd3=FL3-H" in out
    several = next(line for line in out.splitlines() if "several channels" in line)
    assert "cd8" in several
    assert "cd8=" not in out


def test_inspect_several_good_files(capsys, good_fcs):
    path = DATA / "test_comp_example.fcs"
    code, out, err = run(capsys, "inspect", str(good_fcs), str(path))
    assert code == 0, err
    assert str(good_fcs) in out and str(path) in out
    assert out.index(str(good_fcs)) < out.index(str(path))


# -- inspect: bad files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("missing", "not found"),
        ("garbage", "too short"),
        ("truncated", "truncated"),
        ("text", "not an FCS file"),
    ],
)
def test_inspect_bad_file_one_line(capsys, bad_files, kind, problem):
    path = bad_files[kind]
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    assert problem in lines[0]
    assert "Traceback" not in err
    assert out == ""


def test_inspect_folder_is_a_bad_file(capsys, tmp_path):
    folder = tmp_path / "run.fcs"
    folder.mkdir()
    code, out, err = run(capsys, "inspect", str(folder))
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert str(folder) in err and "folder" in err


def test_inspect_good_files_still_printed_among_bad(capsys, bad_files, good_fcs):
    comp = DATA / "test_comp_example.fcs"
    argv = [str(good_fcs), str(bad_files["missing"]), str(comp), str(bad_files["garbage"]),
            str(bad_files["truncated"]), str(bad_files["text"])]
    code, out, err = run(capsys, "inspect", *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 4
    for line, kind in zip(lines, ["missing", "garbage", "truncated", "text"]):
        assert str(bad_files[kind]) in line
    assert str(good_fcs) in out and str(comp) in out
    assert "10,703" in out
    for kind in bad_files:
        assert str(bad_files[kind]) not in out


def test_inspect_subprocess_exit_status_and_no_traceback(bad_files, good_fcs):
    """The real process (console script when installed): exit 1, one stderr line per bad file."""
    argv = [str(good_fcs), *(str(p) for p in bad_files.values())]
    proc = run_process("inspect", *argv)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(bad_files), proc.stderr
    for line, path in zip(lines, bad_files.values()):
        assert str(path) in line
    assert str(good_fcs) in proc.stdout
    assert "cd4=FL1-A" in proc.stdout


def test_inspect_subprocess_module_good_files_exit_zero(good_fcs):
    proc = run_process("inspect", str(good_fcs), str(DATA / "data1.fcs"), module=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "FL1-A" in proc.stdout and "13,367" in proc.stdout


def test_a_gating_job_imports_numpy_only(tmp_path):
    """Issue 8: per-sample jobs stay lean (each of these costs 0.3-2 s of start-up per job); the
    cohort, stats and report commands import them. As the workflow runs it (default template,
    settings as JSON) a gating job does not even import PyYAML (nor numpy.ma, nor numpy.random,
    about 2 MB of its memory, nor the simulator for ``simulate --visits``' choices); with a YAML
    config it does, and its provenance records PyYAML's version."""
    from treganalysis.simulate import simulate_cohort

    simulate_cohort(tmp_path / "sim", subjects=1, events=5000, seed=1)
    fcs = sorted((tmp_path / "sim" / "fcs").glob("*.fcs"))[0]
    config = tmp_path / "config.yaml"
    config.write_text("qc: {bin_events: 400}\n")
    for extra, out, unwanted in ((["--config-json", '{"qc": {"bin_events": 400}}'], "json", "[]"),
                                 (["--config", str(config)], "yaml", "['yaml']")):
        code = ("import sys; from treganalysis.cli import main; "
                f"main(['gate', {str(fcs)!r}, '--out', {str(tmp_path / out)!r}, *{extra!r}]); "
                "print(sorted(m for m in ('pandas', 'scipy', 'sklearn', 'plotly', 'statsmodels', 'yaml', 'numpy.ma',"
                " 'numpy.random', 'treganalysis.simulate') "
                "if m in sys.modules))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1] == unwanted
        versions = json.loads((tmp_path / out / "gates.json").read_text())["provenance"]["versions"]
        assert (versions["pyyaml"] is None) == (out == "json") and versions["numpy"]


def test_gate_with_two_threads_writes_the_same_files(tmp_path, capsys):
    """``gate --threads 2`` runs QC beside the transforms and the table beside the views, with
    BLAS held to one thread meanwhile: the same bytes as one thread, and the caller's BLAS
    threads as they were after it."""
    from threadpoolctl import threadpool_info

    from treganalysis.simulate import simulate_cohort

    simulate_cohort(tmp_path / "sim", subjects=1, events=20_000, seed=2)
    fcs = sorted((tmp_path / "sim" / "fcs").glob("*.fcs"))[0]
    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    for threads in ("1", "2"):
        assert main(["gate", str(fcs), "--out", str(tmp_path / threads), "--threads", threads]) == 0
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == blas
    for name in ("populations.tsv", "gates.json", "views.npz"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["gate", str(fcs), "--out", str(tmp_path / "0"), "--threads", "0"])
    assert exit_.value.code == 2
    assert "--threads: expected a whole number of at least 1, not '0'" in capsys.readouterr().err
    assert not (tmp_path / "0").exists()


def test_gate_with_two_threads_reports_an_error_of_a_step_as_with_one(tmp_path, capsys, monkeypatch):
    """A user's problem found in a step that ran beside another (here the transforms) gives the
    one-line error, or with --record-failure the failure record and status 0: no traceback."""
    from treganalysis.errors import TransformError
    from treganalysis.gating import strategy
    from treganalysis.simulate import simulate_cohort

    simulate_cohort(tmp_path / "sim", subjects=1, events=5_000, seed=2)
    fcs = sorted((tmp_path / "sim" / "fcs").glob("*.fcs"))[0]

    def transform(*args, **kwargs):
        raise TransformError(f"{fcs}: CD25 has no negative events to estimate Logicle W from")

    monkeypatch.setattr(strategy, "_transform", transform)
    code, out, err = run(capsys, "gate", str(fcs), "--out", str(tmp_path / "plain"), "--threads", "2")
    assert code == 1 and "no negative events to estimate Logicle W" in err and "Traceback" not in err
    assert not (tmp_path / "plain" / "populations.tsv").exists()
    code, out, err = run(capsys, "gate", str(fcs), "--out", str(tmp_path / "kept"), "--threads", "2",
                         "--record-failure")
    assert code == 0 and "FAILED" in out and "Traceback" not in err
    table = (tmp_path / "kept" / "populations.tsv").read_text()
    assert "failed" in table and "no negative events to estimate Logicle W" in table
