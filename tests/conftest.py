"""Shared fixtures: where the real FCS files are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent
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
