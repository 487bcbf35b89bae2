"""Shared fixtures: where the real FCS files are."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent
REPO = HERE.parent
DATA = HERE / "data"
SHARED = HERE.parent.parent / "shared" / "data"


def fcsparser_files() -> Path | None:
    """Folder of the real instrument files shipped inside the fcsparser package, if installed."""
    spec = importlib.util.find_spec("fcsparser")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "tests" / "data" / "FlowCytometers"
    return folder if folder.is_dir() else None


def shared(*parts: str) -> Path:
    """A path under ../shared/data; the test is skipped when ../shared is not beside the repo."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is not beside the repository)")
    return path


@pytest.fixture
def data_dir() -> Path:
    return DATA


def run_snakemake(workdir: Path, *args: str, config: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The workflow's command line in ``workdir``: config/config.yaml updated by ``config``, the
    interpreter's folder first on PATH (as an activated environment has it)."""
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    settings.update(config or {})
    configfile = workdir / "test-config.yaml"
    configfile.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(configfile), *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
